#include "plugins/portmap/state.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/files.h"

namespace cni::portmap {

namespace {

constexpr const char* kSuffix = ".json";

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
      f.family = t.at("family").get<int>();
      f.port = t.at("port").get<uint16_t>();
      f.count = t.at("count").get<uint16_t>();
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

std::string network_dir(const std::string& state_dir, const std::string& network) {
  return state_dir + "/" + network;
}

std::string state_path(const std::string& state_dir, const Attachment& a) {
  return network_dir(state_dir, a.network) + "/" + a.container_id + "@" + a.ifname + kSuffix;
}

std::optional<State> load_state(const std::string& path) {
  auto text = read_file(path);
  if (!text) return std::nullopt;
  try {
    json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw Error(kErrIo, "corrupt portmap state file " + path, "not JSON");
    return State::from_json(j, path);
  } catch (const Error& e) {
    spdlog::warn("portmap: ignoring {}: {}", path, e.what());
    return std::nullopt;
  }
}

void save_state(const std::string& path, const State& state) {
  // No fsync: the elements it mirrors do not survive a reboot either (see atomic_replace).
  atomic_replace(path, state.to_json().dump(), 0600);
}

std::vector<std::pair<std::string, State>> load_all_states(const std::string& state_dir) {
  std::vector<std::pair<std::string, State>> out;
  for (const std::string& network : list_dir(state_dir)) {
    if (network == "lock" || network[0] == '.') continue;
    const std::string dir = network_dir(state_dir, network);
    for (const std::string& name : list_dir(dir)) {
      // Temp files of atomic_write are hidden; anything else not ours is ignored.
      if (name[0] == '.' || name.size() <= 5 || name.compare(name.size() - 5, 5, kSuffix) != 0) {
        continue;
      }
      const std::string path = dir + "/" + name;
      if (auto s = load_state(path)) out.emplace_back(path, std::move(*s));
    }
  }
  return out;
}

}  // namespace cni::portmap
