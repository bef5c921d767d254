#include "common/attachment_store.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/netconf.h"

namespace cni {
namespace {

constexpr std::string_view kExt = ".json";

// "<a><sep><b>.json" -> {a, b}; nullopt for anything else (hidden files, other names).
std::optional<std::pair<std::string, std::string>> split_name(const std::string& name, char sep) {
  if (name.empty() || name[0] == '.' || name.size() <= kExt.size() || !name.ends_with(kExt)) {
    return std::nullopt;
  }
  const std::string stem = name.substr(0, name.size() - kExt.size());
  const size_t at = stem.find(sep);
  if (at == std::string::npos || at == 0 || at + 1 == stem.size()) return std::nullopt;
  return std::pair{stem.substr(0, at), stem.substr(at + 1)};
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

AttachmentFiles::AttachmentFiles(std::string root, Durability durability, Legacy legacy)
    : root_(std::move(root)), durability_(durability), legacy_(legacy) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string AttachmentFiles::path(const AttachmentKey& key) const {
  return root_ + "/" + key.network + "/" + key.container_id + ":" + key.ifname + std::string(kExt);
}

std::optional<std::string> AttachmentFiles::legacy_path(const AttachmentKey& key) const {
  switch (legacy_) {
    case Legacy::kNone:
      return std::nullopt;
    case Legacy::kAtInNetworkDir:
      return root_ + "/" + key.network + "/" + key.container_id + "@" + key.ifname +
             std::string(kExt);
    case Legacy::kFlatAt:
      return root_ + "/" + key.network + "@" + key.container_id + "@" + key.ifname +
             std::string(kExt);
  }
  return std::nullopt;
}

void AttachmentFiles::save_json(const AttachmentKey& key, const json& state) const {
  ensure_dir(root_ + "/" + key.network, 0700);
  const std::string text = state.dump();
  if (durability_ == Durability::kDurable) {
    atomic_write(path(key), text, 0600);
  } else {
    atomic_replace(path(key), text, 0600);
  }
  // The new file covers what the old one did: the older layout's file goes only after it.
  if (auto old = legacy_path(key)) remove_file(*old);
}

bool AttachmentFiles::remove(const AttachmentKey& key) const {
  bool existed = remove_file(path(key));
  if (auto old = legacy_path(key)) existed = remove_file(*old) || existed;
  return existed;
}

bool AttachmentFiles::contains(const AttachmentKey& key) const {
  struct stat st {};
  if (::stat(path(key).c_str(), &st) == 0) return true;
  auto old = legacy_path(key);
  return old && ::stat(old->c_str(), &st) == 0;
}

void AttachmentFiles::read(const AttachmentKey& key, const std::function<void(const json&)>& parse,
                           bool check) const {
  std::string file = path(key);
  std::optional<std::string> text = read_file(file);
  if (!text) {
    auto old = legacy_path(key);
    if (!old) return;
    file = *old;
    text = read_file(file);
    if (!text) return;
  }
  std::string why;
  try {
    json j = parse_bounded(*text);
    if (j.is_discarded()) {
      why = text->empty() ? "empty" : "not JSON";
    } else {
      parse(j);
      return;
    }
  } catch (const Error& e) {
    why = e.what();
  } catch (const json::exception& e) {
    why = e.what();
  }
  if (check) throw Error(kErrStateCorrupt, "state corrupt", file + ": " + why);
  spdlog::warn("ignoring corrupt state file {}: {}", file, why);
}

void AttachmentFiles::list_into(const std::string& network, std::vector<AttachmentKey>& out) const {
  for (const std::string& name : list_dir(root_ + "/" + network)) {
    if (auto p = split_name(name, ':')) {
      out.push_back({network, p->first, p->second});
    } else if (legacy_ == Legacy::kAtInNetworkDir) {
      if (auto q = split_name(name, '@')) out.push_back({network, q->first, q->second});
    }
  }
}

void AttachmentFiles::list_flat_into(const std::string* network,
                                     std::vector<AttachmentKey>& out) const {
  if (legacy_ != Legacy::kFlatAt) return;
  for (const std::string& name : list_dir(root_)) {
    // <network>@<containerID>@<ifname>.json
    auto p = split_name(name, '@');
    if (!p || (network && p->first != *network)) continue;
    if (auto q = split_name(p->second + std::string(kExt), '@')) {
      out.push_back({p->first, q->first, q->second});
    }
  }
}

std::vector<AttachmentKey> AttachmentFiles::list(const std::string& network) const {
  std::vector<AttachmentKey> out;
  list_into(network, out);
  list_flat_into(&network, out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<AttachmentKey> AttachmentFiles::list() const {
  std::vector<AttachmentKey> out;
  for (const std::string& name : list_dir(root_)) {
    if (name[0] != '.' && is_dir(root_ + "/" + name)) list_into(name, out);
  }
  list_flat_into(nullptr, out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace cni
