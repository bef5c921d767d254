#include "plugins/bridge/state.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/files.h"

namespace cni::bridge {
namespace {

constexpr std::string_view kSuffix = ".json";

std::optional<AttachmentState> parse_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return std::nullopt;
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  try {
    return AttachmentState::from_json(j);
  } catch (const Error& e) {
    spdlog::warn("ignoring unreadable state file {}: {}", path, e.what());
    return std::nullopt;
  }
}

}  // namespace

json AttachmentState::to_json() const {
  return json{
      {"containerID", container_id}, {"ifname", ifname},      {"bridge", bridge},
      {"fwInterfaces", fw_ifaces},   {"hostVeth", host_veth}, {"containerMac", container_mac},
      {"masqIPs", masq_ips},         {"spoofchk", spoofchk}};
}

AttachmentState AttachmentState::from_json(const json& j) {
  if (!j.is_object()) throw Error(kErrDecode, "bridge state", "not a JSON object");
  AttachmentState s;
  try {
    s.container_id = j.at("containerID").get<std::string>();
    s.ifname = j.at("ifname").get<std::string>();
    s.bridge = j.at("bridge").get<std::string>();
    s.fw_ifaces = j.at("fwInterfaces").get<std::vector<std::string>>();
    s.host_veth = j.value("hostVeth", "");
    s.container_mac = j.value("containerMac", "");
    s.masq_ips = j.at("masqIPs").get<std::vector<std::string>>();
    s.spoofchk = j.value("spoofchk", false);
  } catch (const json::exception& e) {
    throw Error(kErrDecode, "bridge state", e.what());
  }
  return s;
}

std::string state_file(const std::string& dir, const std::string& container_id,
                       const std::string& ifname) {
  return dir + "/" + container_id + ":" + ifname + std::string(kSuffix);
}

void save_state(const std::string& dir, const AttachmentState& state) {
  ensure_dir(dir, 0700);
  // No fsync: the file mirrors nftables elements, which a reboot empties as well (header).
  atomic_replace(state_file(dir, state.container_id, state.ifname), state.to_json().dump() + "\n",
                 0600);
}

std::optional<AttachmentState> load_state(const std::string& dir, const std::string& container_id,
                                          const std::string& ifname) {
  return parse_file(state_file(dir, container_id, ifname));
}

void remove_state(const std::string& dir, const std::string& container_id,
                  const std::string& ifname) {
  remove_file(state_file(dir, container_id, ifname));
}

std::vector<AttachmentState> list_states(const std::string& dir) {
  std::vector<AttachmentState> out;
  for (const std::string& name : list_dir(dir)) {
    if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix) || name[0] == '.') continue;
    if (auto s = parse_file(dir + "/" + name)) out.push_back(std::move(*s));
  }
  return out;
}

}  // namespace cni::bridge
