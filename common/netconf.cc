#include "common/netconf.h"

#include <linux/netfilter/nf_tables.h>
#include <strings.h>

#include <algorithm>

#include "common/error.h"

namespace cni {

int json_depth(std::string_view data, int stop_at) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < data.size(); ++i) {
    char c = data[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest >= stop_at) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

json parse_untrusted(std::string_view data, int depth_code) {
  if (json_depth(data) > kMaxJsonDepth) {
    throw Error(depth_code, "JSON nested too deeply",
                "more than " + std::to_string(kMaxJsonDepth) + " levels of arrays and objects");
  }
  return json::parse(data, nullptr, /*allow_exceptions=*/false);
}

json parse_bounded(std::string_view data) {
  if (json_depth(data) > kMaxJsonDepth) return json::value_t::discarded;
  return json::parse(data, nullptr, /*allow_exceptions=*/false);
}

std::string excerpt(const json& v) {
  constexpr size_t kMax = 200;
  std::string text;
  if (v.is_array() || v.is_object()) {
    // Never dump a huge container whole: its first elements say enough.
    json head = v.is_array() ? json::array() : json::object();
    size_t n = 0;
    for (auto it = v.begin(); it != v.end() && n < 8; ++it, ++n) {
      if (v.is_array()) {
        head.push_back(*it);
      } else {
        head[it.key()] = *it;
      }
    }
    text = head.dump(-1, ' ', false, json::error_handler_t::replace);
    if (n < v.size()) text += " (" + std::to_string(v.size()) + " elements)";
  } else {
    text = v.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return text.size() <= kMax ? text : printable(text, kMax);
}

const json* find_key(const json& obj, std::string_view key) {
  if (!obj.is_object()) {
    return nullptr;
  }
  const json* found = nullptr;
  if (auto it = obj.find(key); it != obj.end()) {
    found = &*it;
  } else {
    for (auto it2 = obj.begin(); it2 != obj.end(); ++it2) {
      const std::string& k = it2.key();
      if (k.size() == key.size() && strncasecmp(k.data(), key.data(), k.size()) == 0) {
        found = &*it2;
        break;
      }
    }
  }
  return (found && !found->is_null()) ? found : nullptr;
}

std::string key_path(std::string_view where, std::string_view key) {
  return where.empty() ? std::string(key) : std::string(where) + "." + std::string(key);
}

namespace {

[[noreturn]] void wrong_type(std::string_view where, std::string_view key, const char* expected,
                             const json& got) {
  throw_config(key_path(where, key) + ": expected " + expected + ", got " + got.type_name() + " " +
               excerpt(got));
}

}  // namespace

std::optional<bool> get_bool(const json& obj, std::string_view key, std::string_view where) {
  const json* v = find_key(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(where, key, "a boolean", *v);
  return v->get<bool>();
}

std::optional<std::string> get_string(const json& obj, std::string_view key,
                                      std::string_view where) {
  const json* v = find_key(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(where, key, "a string", *v);
  return v->get<std::string>();
}

static_assert(kNftNameMax == NFT_NAME_MAXLEN - 1, "the kernel's table name limit");

std::string get_nft_table(const json& obj, std::string_view fallback) {
  std::string name = get_string(obj, "nftTable").value_or(std::string(fallback));
  const bool valid =
      !name.empty() && name.size() <= kNftNameMax &&
      std::isalpha(static_cast<unsigned char>(name[0])) &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      });
  if (!valid) {
    throw_config("nftTable: \"" + name +
                 "\" is not a valid nftables table name (a letter, then up to " +
                 std::to_string(kNftNameMax - 1) + " of [A-Za-z0-9_.-])");
  }
  return name;
}

std::string get_state_dir(const json& obj, std::string_view fallback) {
  std::string dir = get_string(obj, "stateDir").value_or(std::string(fallback));
  if (dir.empty() || dir[0] != '/') {
    throw_config("stateDir: must be an absolute path, got \"" + dir + "\"");
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

std::optional<int64_t> get_int(const json& obj, std::string_view key, std::string_view where,
                               int64_t min, int64_t max) {
  const json* v = find_key(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(where, key, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(max)) {
    throw_config(key_path(where, key) + ": " + excerpt(*v) + " is out of range [" +
                 std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  int64_t n = v->get<int64_t>();
  if (n < min || n > max) {
    throw_config(key_path(where, key) + ": " + std::to_string(n) + " is out of range [" +
                 std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return n;
}

int64_t require_int(const json& obj, std::string_view key, std::string_view where, int64_t min,
                    int64_t max) {
  auto n = get_int(obj, key, where, min, max);
  if (!n) throw_config(key_path(where, key) + " is missing");
  return *n;
}

const json* get_object(const json& obj, std::string_view key, std::string_view where) {
  const json* v = find_key(obj, key);
  if (v && !v->is_object()) wrong_type(where, key, "an object", *v);
  return v;
}

const json* get_array(const json& obj, std::string_view key, std::string_view where, size_t max) {
  const json* v = find_key(obj, key);
  if (v && !v->is_array()) wrong_type(where, key, "a list", *v);
  if (v && v->size() > max) {
    throw_config(key_path(where, key) + ": " + std::to_string(v->size()) + " entries, at most " +
                 std::to_string(max) + " are accepted");
  }
  return v;
}

std::optional<std::vector<std::string>> get_string_list(const json& obj, std::string_view key,
                                                        std::string_view where, size_t max) {
  const json* v = get_array(obj, key, where, max);
  if (!v) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& e : *v) {
    if (!e.is_string()) wrong_type(where, key, "a list of strings", *v);
    out.push_back(e.get<std::string>());
  }
  return out;
}

CniArgs CniArgs::parse(std::string_view text) {
  CniArgs out;
  while (!text.empty()) {
    auto semi = text.find(';');
    std::string_view pair = text.substr(0, semi);
    text = semi == std::string_view::npos ? std::string_view{} : text.substr(semi + 1);
    if (pair.empty()) {
      continue;
    }
    auto eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      throw Error(kErrInvalidEnv, "invalid CNI_ARGS",
                  "ARGS: invalid pair \"" + std::string(pair) + "\"");
    }
    out.pairs_.emplace_back(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
  }
  return out;
}

void CniArgs::check_known(std::initializer_list<std::string_view> known) const {
  auto ignore = get("IgnoreUnknown");
  if (ignore && (*ignore == "1" || strcasecmp(ignore->c_str(), "true") == 0)) {
    return;
  }
  static constexpr std::string_view kAlwaysKnown[] = {"IgnoreUnknown", "K8S_POD_NAMESPACE",
                                                      "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID",
                                                      "K8S_POD_UID"};
  for (const auto& [k, v] : pairs_) {
    bool ok = false;
    for (auto name : kAlwaysKnown) ok = ok || k == name;
    for (auto name : known) ok = ok || k == name;
    if (!ok) {
      throw Error(kErrInvalidEnv, "invalid CNI_ARGS", "ARGS: unknown args \"" + k + "\"");
    }
  }
}

std::optional<std::string> CniArgs::get(std::string_view key) const {
  for (const auto& [k, v] : pairs_) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::optional<std::vector<Attachment>> valid_attachments(const json& raw) {
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    const json* list = get_array(raw, key, {}, kMaxAttachments);
    if (!list) continue;
    std::vector<Attachment> out;
    for (size_t i = 0; i < list->size(); ++i) {
      const json& e = (*list)[i];
      const std::string where = std::string(key) + "[" + std::to_string(i) + "]";
      if (!e.is_object()) throw_config(where + ": expected an object, got " + excerpt(e));
      auto id = get_string(e, "containerID", where);
      auto ifname = get_string(e, "ifname", where);
      if (!id) throw_config(key_path(where, "containerID") + ": missing");
      if (!ifname) throw_config(key_path(where, "ifname") + ": missing");
      out.push_back({*id, *ifname});
    }
    return out;
  }
  return std::nullopt;
}

NetConf NetConf::parse(std::string_view data) {
  NetConf c;
  c.raw = parse_untrusted(data, kErrInvalidConfig);
  if (c.raw.is_discarded() || !c.raw.is_object()) {
    throw Error(kErrDecode, "failed to decode network configuration",
                c.raw.is_discarded() ? "stdin is not valid JSON" : "stdin is not a JSON object");
  }
  c.cni_version = get_string(c.raw, "cniVersion").value_or("0.1.0");
  auto name = get_string(c.raw, "name");
  if (!name || name->empty()) throw_config("missing network name: key \"name\"");
  c.name = *name;
  auto type = get_string(c.raw, "type");
  if (!type || type->empty()) throw_config("missing plugin type: key \"type\"");
  c.type = *type;
  if (const json* ipam = get_object(c.raw, "ipam")) c.ipam = *ipam;
  if (const json* dns = get_object(c.raw, "dns")) {
    try {
      c.dns = dns_from_json(*dns);
    } catch (const Error& e) {
      throw_config(e.details());
    }
  }
  if (const json* rc = get_object(c.raw, "runtimeConfig")) c.runtime_config = *rc;
  if (const json* args = get_object(c.raw, "args")) c.args = *args;
  if (const json* prev = get_object(c.raw, "prevResult")) {
    try {
      c.prev_result = Result::from_json(*prev);
    } catch (const Error& e) {
      throw Error(kErrDecode, "failed to decode prevResult", e.details());
    }
  }
  return c;
}

std::string NetConf::ipam_type() const { return get_string(ipam, "type", "ipam").value_or(""); }

}  // namespace cni
