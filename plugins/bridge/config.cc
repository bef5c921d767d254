#include "plugins/bridge/config.h"

#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <set>

#include "common/dns_settings.h"
#include "common/error.h"
#include "common/mac.h"
#include "common/overlay.h"
#include "common/skel.h"

namespace cni::bridge {
namespace {

bool flag(const json& raw, const char* key, bool def) { return get_bool(raw, key).value_or(def); }

// vlanTrunk: [{"id": n} | {"minID": a, "maxID": b}], the reference's collectVlanTrunk rules and
// messages.
std::vector<int> parse_vlan_trunk(const json& list) {
  std::set<int> vlans;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    const std::string where = "vlanTrunk[" + std::to_string(i) + "]";
    if (!item.is_object()) {
      throw_config(where + ": expected an object, got " + excerpt(item));
    }
    auto min_id = get_int(item, "minID", where);
    auto max_id = get_int(item, "maxID", where);
    auto id = get_int(item, "id", where);
    if (min_id && max_id) {
      if (*min_id <= 0 || *min_id > 4094) throw_config("incorrect trunk minID parameter");
      if (*max_id <= 0 || *max_id > 4094) throw_config("incorrect trunk maxID parameter");
      if (*max_id < *min_id) throw_config("minID is greater than maxID in trunk parameter");
      for (int64_t v = *min_id; v <= *max_id; ++v) vlans.insert(static_cast<int>(v));
    } else if (max_id) {
      throw_config("minID and maxID should be configured simultaneously, minID is missing");
    } else if (min_id) {
      throw_config("minID and maxID should be configured simultaneously, maxID is missing");
    }
    if (id) {
      if (*id <= 0 || *id > 4094) throw_config("incorrect trunk id parameter");
      vlans.insert(static_cast<int>(*id));
    }
  }
  return {vlans.begin(), vlans.end()};
}

// A MAC from one source, validated; `key` names the source in the error.
Mac checked_mac(const std::string& text, const std::string& key) {
  auto mac = Mac::parse(text);
  if (!mac) throw_config(key + ": invalid MAC address \"" + text + "\"");
  return *mac;
}

// The overlay's cluster ranges: the subnets of the IPAM config (host-local's ranges, or its
// legacy top-level subnet). With `cluster`, host-local carves each host's blocks out of them.
std::vector<Prefix> ipam_subnets(const json& raw) {
  std::vector<Prefix> out;
  const json* ipam = get_object(raw, "ipam");
  if (ipam == nullptr) return out;
  auto add = [&](const json& obj, const std::string& where) {
    if (auto subnet = get_string(obj, "subnet", where)) {
      auto p = Prefix::parse(*subnet);
      if (!p) throw_config(key_path(where, "subnet") + ": invalid CIDR \"" + *subnet + "\"");
      out.push_back(p->network());
    }
  };
  add(*ipam, "ipam");
  if (const json* ranges = get_array(*ipam, "ranges", "ipam")) {
    for (size_t i = 0; i < ranges->size(); ++i) {
      const json& set = (*ranges)[i];
      if (!set.is_array()) continue;  // host-local reports the shape
      for (size_t j = 0; j < set.size(); ++j) {
        if (set[j].is_object()) {
          add(set[j], "ipam.ranges[" + std::to_string(i) + "][" + std::to_string(j) + "]");
        }
      }
    }
  }
  return out;
}

// "80/tcp", "53/udp", "9/sctp", or "80" (tcp), as Docker writes exposed ports.
LinkPort parse_link_port(const json& item, const std::string& where) {
  if (!item.is_string()) throw_config(where + ": expected a string like \"80/tcp\"");
  const std::string text = item.get<std::string>();
  const size_t slash = text.find('/');
  const std::string num = text.substr(0, slash);
  const std::string proto = slash == std::string::npos ? "tcp" : text.substr(slash + 1);
  LinkPort p;
  if (proto == "tcp") {
    p.proto = IPPROTO_TCP;
  } else if (proto == "udp") {
    p.proto = IPPROTO_UDP;
  } else if (proto == "sctp") {
    p.proto = IPPROTO_SCTP;
  } else {
    throw_config(where + ": protocol must be tcp, udp or sctp, got \"" + text + "\"");
  }
  unsigned long value = 0;
  const bool digits =
      !num.empty() && num.size() <= 5 &&
      std::all_of(num.begin(), num.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
  if (digits) value = std::stoul(num);
  if (!digits || value == 0 || value > 65535) {
    throw_config(where + ": port must be 1-65535, got \"" + text + "\"");
  }
  p.port = static_cast<uint16_t>(value);
  return p;
}

// args.cni.links: [{"peer": "10.88.0.5", "ports": ["80/tcp"]}, ...].
std::vector<PeerLink> parse_links(const json& links) {
  std::vector<PeerLink> out;
  for (size_t i = 0; i < links.size(); ++i) {
    const std::string where = "args.cni.links[" + std::to_string(i) + "]";
    const json& item = links[i];
    if (!item.is_object()) throw_config(where + ": expected an object");
    auto peer_text = get_string(item, "peer", where);
    if (!peer_text) throw_config(where + ".peer: missing");
    std::optional<IpAddr> peer = IpAddr::parse(*peer_text);
    if (!peer) throw_config(where + ".peer: not an IP address: \"" + *peer_text + "\"");
    if (!peer->is_v4()) {
      throw_config(where + ".peer: only IPv4 peers are supported, got \"" + *peer_text + "\"");
    }
    PeerLink link{*peer, {}};
    const json* ports = get_array(item, "ports", where);
    if (!ports || ports->empty()) throw_config(where + ".ports: expected a non-empty list");
    for (size_t k = 0; k < ports->size(); ++k) {
      LinkPort p = parse_link_port((*ports)[k], where + ".ports[" + std::to_string(k) + "]");
      if (std::find(link.ports.begin(), link.ports.end(), p) == link.ports.end()) {
        link.ports.push_back(p);
      }
    }
    out.push_back(std::move(link));
  }
  return out;
}

std::optional<OverlayConf> parse_overlay(const json& raw) {
  const json* o = get_object(raw, "overlay");
  if (o == nullptr) return std::nullopt;
  OverlayConf c;
  auto vni = get_int(*o, "vni", "overlay", 1, 0xffffff);
  if (!vni) throw_config("overlay.vni: missing (1-16777215)");
  c.vni = static_cast<uint32_t>(*vni);
  c.port = static_cast<uint16_t>(get_int(*o, "port", "overlay", 1, 65535).value_or(4789));
  return c;
}

// The bridge and its links: name, gateway, masquerade backend, MTU, hairpin/promiscuous mode.
void parse_bridge(Config& c, const json& raw) {
  c.bridge = get_string(raw, "bridge").value_or(kDefaultBridge);
  if (c.bridge.empty()) c.bridge = kDefaultBridge;  // Go: an empty string keeps the default
  if (auto why = invalid_ifname_reason(c.bridge)) throw_config("bridge: " + *why + ": " + c.bridge);
  c.is_default_gateway = flag(raw, "isDefaultGateway", false);
  c.is_gateway = flag(raw, "isGateway", false) || c.is_default_gateway;
  c.force_address = flag(raw, "forceAddress", false);
  c.ip_masq = flag(raw, "ipMasq", false);
  c.ip_masq_backend = get_string(raw, "ipMasqBackend").value_or("");
  if (!c.ip_masq_backend.empty() && c.ip_masq_backend != "iptables" &&
      c.ip_masq_backend != "nftables") {
    throw_config("ipMasqBackend: unknown ipmasq backend \"" + c.ip_masq_backend +
                 "\" (expected \"iptables\" or \"nftables\")");
  }
  c.mtu = static_cast<unsigned>(get_int(raw, "mtu", {}, 0, 65535).value_or(0));
  c.hairpin_mode = flag(raw, "hairpinMode", false);
  c.promisc_mode = flag(raw, "promiscMode", false);
  if (c.hairpin_mode && c.promisc_mode) {
    throw_config("cannot set hairpin mode and promiscuous mode at the same time");
  }
}

// vlan, vlanTrunk and the container-interface switches.
void parse_vlan(Config& c, const json& raw) {
  // Read as a wide integer so that the range message below is the reference's.
  int64_t vlan = get_int(raw, "vlan", {}, INT64_MIN, INT64_MAX).value_or(0);
  if (vlan < 0 || vlan > 4094) {
    throw_config("invalid VLAN ID " + std::to_string(vlan) + " (must be between 0 and 4094)");
  }
  c.vlan = static_cast<int>(vlan);
  // Only 4094 VLAN IDs exist: a longer list can only repeat them.
  if (const json* trunk = get_array(raw, "vlanTrunk", {}, 4094)) {
    c.vlan_trunk_set = true;
    c.vlan_trunk = parse_vlan_trunk(*trunk);
  }
  c.preserve_default_vlan = flag(raw, "preserveDefaultVlan", false);
  c.macspoofchk = flag(raw, "macspoofchk", false);
  c.enable_dad = flag(raw, "enabledad", false);
  c.disable_container_interface = flag(raw, "disableContainerInterface", false);
  if (c.layer3() && c.disable_container_interface) {
    throw_config("cannot use IPAM when DisableContainerInterface flag is set");
  }
  c.port_isolation = flag(raw, "portIsolation", false);
}

// MAC: CNI_ARGS MAC= < args.cni.mac < runtimeConfig.mac, as the reference's loadNetConf.
void parse_mac(Config& c, const NetConf& conf, const CniArgs& cni_args) {
  cni_args.check_known({"MAC"});
  if (auto mac = cni_args.get("MAC"); mac && !mac->empty())
    c.mac = checked_mac(*mac, "CNI_ARGS MAC");
  if (const json* cni = get_object(conf.args, "cni", "args")) {
    if (auto mac = get_string(*cni, "mac", "args.cni"); mac && !mac->empty()) {
      c.mac = checked_mac(*mac, "args.cni.mac");
    }
  }
  if (auto mac = get_string(conf.runtime_config, "mac", "runtimeConfig"); mac && !mac->empty()) {
    c.mac = checked_mac(*mac, "runtimeConfig.mac");
  }
}

// Docker's switches: icc, internal, isolate, and the links that open an icc=false bridge.
void parse_isolation(Config& c, const NetConf& conf) {
  const json& raw = conf.raw;
  c.icc = flag(raw, "icc", true);
  c.internal = flag(raw, "internal", false);
  c.isolate = flag(raw, "isolate", false);
  if (const json* cni = get_object(conf.args, "cni", "args")) {
    if (const json* links = get_array(*cni, "links", "args.cni")) c.links = parse_links(*links);
  }
  // Linked traffic between two isolated ports is routed through the host (README: Links).
  if (!c.icc && !c.links.empty() && !c.is_gateway && !c.is_default_gateway) {
    throw_config("args.cni.links on an icc=false bridge needs isGateway");
  }
}

// firewall "nftables" or "none", and where nftables and the state live.
void parse_firewall(Config& c, const json& raw) {
  const std::string firewall = get_string(raw, "firewall").value_or("nftables");
  if (firewall == "nftables") {
    c.firewall = Firewall::kNftables;
  } else if (firewall == "none") {
    c.firewall = Firewall::kNone;
  } else {
    throw_config("firewall: expected \"nftables\" or \"none\", got \"" + firewall + "\"");
  }
  if (c.firewall == Firewall::kNone) {
    // "none" promises that no netfilter state is touched: a switch that needs some is a
    // contradiction, not something to ignore silently.
    const std::pair<bool, const char*> needs_nft[] = {{c.ip_masq, "ipMasq"},
                                                      {!c.icc, "icc=false"},
                                                      {c.internal, "internal"},
                                                      {c.isolate, "isolate"},
                                                      {c.macspoofchk, "macspoofchk"}};
    for (const auto& [on, what] : needs_nft) {
      if (on) throw_config(std::string(what) + " needs firewall \"nftables\", not \"none\"");
    }
  }
  c.nft_table = get_nft_table(raw, kDefaultNftTable);
  c.state_dir = get_state_dir(raw, kDefaultStateDir);
}

// overlay, overlayDir and the cluster file.
void parse_overlay_keys(Config& c, const json& raw) {
  c.overlay = parse_overlay(raw);
  if (c.overlay && c.firewall == Firewall::kNone) {
    throw_config(
        "overlay needs firewall \"nftables\", not \"none\" (overlays are kept apart there)");
  }
  // Unset: the cluster file's overlayDir (read at ADD), which is where tether-agent looks.
  c.overlay_dir = get_string(raw, "overlayDir").value_or("");
  if (!c.overlay_dir.empty() && c.overlay_dir[0] != '/') {
    throw_config("overlayDir: must be an absolute path, got \"" + c.overlay_dir + "\"");
  }
  // "cluster": true or absent is the default file, a string that file (common/cluster's
  // meaning); false cannot go with an overlay, which needs this host's underlay address.
  if (const json* cl = find_key(raw, "cluster"); cl != nullptr && cl->is_boolean()) {
    if (!cl->get<bool>() && parse_overlay(raw))
      throw_config("cluster: false, but overlay needs it");
  } else if (auto path = get_string(raw, "cluster"); path && !path->empty()) {
    c.cluster_file = *path;
  }
}

void parse_masq_exclude(Config& c, const json& raw) {
  if (auto list = get_string_list(raw, "ipMasqExclude")) {
    for (const std::string& text : *list) {
      auto p = Prefix::parse(text);
      if (!p) throw_config("ipMasqExclude: invalid CIDR \"" + text + "\"");
      c.ip_masq_exclude.push_back(p->network());
    }
  }
}

// An overlay's cluster ranges come from the IPAM config; it cannot be combined with a VLAN.
void parse_cluster_ranges(Config& c, const json& raw) {
  if (c.overlay) {
    if (!c.layer3()) throw_config("overlay: needs an ipam with the cluster range");
    for (const Prefix& p : ipam_subnets(raw)) {
      if (p.addr().is_v4()) c.cluster_ranges.push_back(p);
    }
    if (c.cluster_ranges.empty()) {
      throw_config("overlay: ipam has no IPv4 subnet (the cluster range, in ipam.ranges)");
    }
    if (c.vlan != 0 || c.vlan_trunk_set) throw_config("overlay: cannot be combined with vlan");
  }
}

}  // namespace

std::vector<Prefix> Config::masq_exclusions() const {
  std::vector<Prefix> all = ip_masq_exclude;
  all.insert(all.end(), cluster_ranges.begin(), cluster_ranges.end());
  std::sort(all.begin(), all.end(),
            [](const Prefix& a, const Prefix& b) { return a.len() < b.len(); });
  std::vector<Prefix> out;
  for (const Prefix& p : all) {
    const bool covered = std::any_of(out.begin(), out.end(), [&](const Prefix& q) {
      return q.addr().family() == p.addr().family() && q.contains(p.first());
    });
    if (!covered) out.push_back(p);
  }
  return out;
}

std::string Config::overlay_device() const {
  return overlay ? overlay::default_device(overlay->vni) : std::string();
}

Config Config::parse(const NetConf& conf, const CniArgs& cni_args) {
  const json& raw = conf.raw;
  Config c;
  c.network = conf.name;
  c.ipam_type = conf.ipam_type();
  parse_bridge(c, raw);
  parse_vlan(c, raw);
  if (conf.dns && !conf.dns->empty()) c.dns = conf.dns;
  c.runtime_dns = cni::runtime_dns(conf.runtime_config);
  parse_mac(c, conf, cni_args);
  parse_isolation(c, conf);
  parse_firewall(c, raw);
  parse_overlay_keys(c, raw);
  parse_masq_exclude(c, raw);
  parse_cluster_ranges(c, raw);
  c.valid_attachments = cni::valid_attachments(raw);
  return c;
}

}  // namespace cni::bridge
