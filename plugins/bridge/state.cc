#include "plugins/bridge/state.h"

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/mac.h"
#include "common/netconf.h"

namespace cni::bridge {
json AttachmentState::to_json() const {
  json j{{"containerID", container_id}, {"ifname", ifname},      {"bridge", bridge},
         {"fwInterfaces", fw_ifaces},   {"hostVeth", host_veth}, {"containerMac", container_mac},
         {"masqIPs", masq_ips},         {"spoofchk", spoofchk}};
  if (!masq_exclude.empty()) j["masqExclude"] = masq_exclude;
  if (!links.empty()) {
    json& out = j["links"] = json::array();
    for (const LinkRule& l : links) {
      out.push_back({{"src", l.src}, {"peer", l.peer}, {"proto", l.proto}, {"port", l.port}});
    }
  }
  return j;
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
    if (!s.container_mac.empty() && !Mac::parse(s.container_mac)) {
      throw Error(kErrDecode, "bridge state", "containerMac is not a MAC address");
    }
    s.masq_ips = j.at("masqIPs").get<std::vector<std::string>>();
    s.spoofchk = j.value("spoofchk", false);
    if (j.contains("masqExclude")) {
      s.masq_exclude = j.at("masqExclude").get<std::vector<std::string>>();
    }
    if (auto it = j.find("links"); it != j.end()) {
      for (const json& l : it->get<std::vector<json>>()) {
        if (!l.is_object()) throw Error(kErrDecode, "bridge state", "a link is not an object");
        s.links.push_back({l.at("src").get<std::string>(), l.at("peer").get<std::string>(),
                           static_cast<uint8_t>(require_int(l, "proto", "links", 0, UINT8_MAX)),
                           static_cast<uint16_t>(require_int(l, "port", "links", 0, UINT16_MAX))});
      }
    }
  } catch (const json::exception& e) {
    throw Error(kErrDecode, "bridge state", e.what());
  }
  return s;
}

}  // namespace cni::bridge
