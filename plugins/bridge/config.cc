#include "plugins/bridge/config.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <set>

#include "common/error.h"
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
      throw_config(where + ": expected an object, got " + item.dump());
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

// A MAC from one source, validated and normalized; `key` names the source in the error.
std::string checked_mac(const std::string& text, const std::string& key) {
  auto mac = normalize_mac(text);
  if (!mac) throw_config(key + ": invalid MAC address \"" + text + "\"");
  return *mac;
}

bool valid_table_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || !std::isalpha(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

}  // namespace

std::optional<std::string> normalize_mac(const std::string& text) {
  if (text.size() != 17) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (i % 3 == 2) {
      if (c != ':' && c != '-') return std::nullopt;
      out += ':';
    } else {
      if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

Config Config::parse(const NetConf& conf, const CniArgs& cni_args) {
  const json& raw = conf.raw;
  Config c;
  c.network = conf.name;
  c.ipam_type = conf.ipam_type();

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
  // Read as a wide integer so that the range message below is the reference's.
  int64_t vlan = get_int(raw, "vlan", {}, INT64_MIN, INT64_MAX).value_or(0);
  if (vlan < 0 || vlan > 4094) {
    throw_config("invalid VLAN ID " + std::to_string(vlan) + " (must be between 0 and 4094)");
  }
  c.vlan = static_cast<int>(vlan);
  if (const json* trunk = get_array(raw, "vlanTrunk")) {
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
  if (conf.dns && !conf.dns->empty()) c.dns = conf.dns;

  // MAC: CNI_ARGS MAC= < args.cni.mac < runtimeConfig.mac, as the reference's loadNetConf.
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

  c.icc = flag(raw, "icc", true);
  c.internal = flag(raw, "internal", false);
  c.isolate = flag(raw, "isolate", false);
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
  c.nft_table = get_string(raw, "nftTable").value_or(kDefaultNftTable);
  if (!valid_table_name(c.nft_table)) {
    throw_config("nftTable: \"" + c.nft_table +
                 "\" is not a valid table name (a letter, then up to 63 of [A-Za-z0-9_.-])");
  }
  c.state_dir = get_string(raw, "stateDir").value_or(kDefaultStateDir);
  if (c.state_dir.empty() || c.state_dir[0] != '/') {
    throw_config("stateDir: must be an absolute path, got \"" + c.state_dir + "\"");
  }
  while (c.state_dir.size() > 1 && c.state_dir.back() == '/') c.state_dir.pop_back();
  c.valid_attachments = cni::valid_attachments(raw);
  return c;
}

}  // namespace cni::bridge
