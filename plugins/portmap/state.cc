#include "plugins/portmap/state.h"

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/netconf.h"

namespace cni::portmap {

namespace {

std::string hex(const nft::Bytes& b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t c : b) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

nft::Bytes unhex(const std::string& s) {
  auto nibble = [&](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    throw Error(kErrDecode, "bad hex in portmap state", s);
  };
  if (s.size() % 2 != 0) throw Error(kErrDecode, "bad hex in portmap state", s);
  nft::Bytes out;
  for (size_t i = 0; i < s.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(nibble(s[i]) << 4 | nibble(s[i + 1])));
  }
  return out;
}

json element_json(const SetElement& e) {
  json j = {{"set", e.set}, {"key", hex(e.element.key)}};
  if (!e.element.key_end.empty()) j["keyEnd"] = hex(e.element.key_end);
  if (!e.element.data.empty()) j["data"] = hex(e.element.data);
  return j;
}

SetElement element_from(const json& j) {
  SetElement e;
  e.set = j.at("set").get<std::string>();
  e.element.key = unhex(j.at("key").get<std::string>());
  if (j.contains("keyEnd")) e.element.key_end = unhex(j["keyEnd"].get<std::string>());
  if (j.contains("data")) e.element.data = unhex(j["data"].get<std::string>());
  return e;
}

}  // namespace

json State::to_json() const {
  json groups_json = json::array();
  for (const Group& g : groups) {
    json keys = json::array();
    json members = json::array();
    for (const SetElement& e : g.keys) keys.push_back(element_json(e));
    for (const SetElement& e : g.members) members.push_back(element_json(e));
    groups_json.push_back(
        {{"what", g.what}, {"exclusive", g.exclusive}, {"keys", keys}, {"members", members}});
  }
  json udp_json = json::array();
  for (const FlushTarget& t : udp) {
    json j = {{"family", t.family}, {"port", t.port}, {"count", t.count}};
    if (t.host_ip) j["hostIP"] = t.host_ip->str();
    udp_json.push_back(j);
  }
  return {{"network", attachment.network}, {"containerID", attachment.container_id},
          {"ifname", attachment.ifname},   {"table", table},
          {"groups", groups_json},         {"udp", udp_json}};
}

State State::from_json(const json& j, const std::string& path) {
  try {
    State s;
    s.attachment = {j.at("network").get<std::string>(), j.at("containerID").get<std::string>(),
                    j.at("ifname").get<std::string>()};
    s.table = j.at("table").get<std::string>();
    for (const json& g : j.at("groups")) {
      Group group;
      group.what = g.at("what").get<std::string>();
      group.exclusive = g.at("exclusive").get<bool>();
      for (const json& e : g.at("keys")) group.keys.push_back(element_from(e));
      for (const json& e : g.at("members")) group.members.push_back(element_from(e));
      if (group.keys.empty()) throw Error(kErrDecode, "a group without keys");
      s.groups.push_back(std::move(group));
    }
    for (const json& t : j.at("udp")) {
      FlushTarget f;
      if (!t.is_object()) throw Error(kErrDecode, "a udp entry is not an object");
      f.family = static_cast<int>(require_int(t, "family", "udp", 4, 6));
      if (f.family != 4 && f.family != 6) throw Error(kErrDecode, "udp.family is not 4 or 6");
      f.port = static_cast<uint16_t>(require_int(t, "port", "udp", 0, UINT16_MAX));
      f.count = static_cast<uint16_t>(require_int(t, "count", "udp", 1, UINT16_MAX));
      if (t.contains("hostIP")) f.host_ip = IpAddr::parse(t["hostIP"].get<std::string>());
      s.udp.push_back(f);
    }
    return s;
  } catch (const Error& e) {
    throw Error(kErrIo, "corrupt portmap state file " + path, e.details());
  } catch (const json::exception& e) {
    throw Error(kErrIo, "corrupt portmap state file " + path, e.what());
  }
}

StateStore state_store(const std::string& state_dir) {
  return StateStore(state_dir, StateStore::Durability::kKernelLifetime,
                    StateStore::Legacy::kAtInNetworkDir);
}

}  // namespace cni::portmap
