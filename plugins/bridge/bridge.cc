#include "plugins/bridge/bridge.h"

#include <linux/if.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/error.h"

namespace cni::bridge {
namespace {

void random_bytes(uint8_t* buf, size_t len) {
  if (getrandom(buf, len, 0) != static_cast<ssize_t>(len)) throw_errno("getrandom");
}

// Best effort, as the reference (`_, _ = sysctl.Sysctl(...)`): a knob that does not exist
// (IPv6 disabled in the kernel) must not fail the attachment.
void try_sysctl(const std::string& key, const char* value) {
  try {
    nl::write_sysctl(key, value);
  } catch (const Error& e) {
    spdlog::debug("sysctl {}={}: {}", key, value, e.what());
  }
}

// Port flags and VLANs of a new bridge port, the reference's setupVeth after the enslave.
void setup_port(nl::Socket& host, const nl::Link& port, const nl::Link& br, bool hairpin,
                bool isolated, int vlan, const std::vector<int>& trunk, bool preserve_default) {
  nl::set_master(host, port.ifindex, br.ifindex);
  nl::set_bridge_port(host, port.ifindex, {hairpin, isolated, std::nullopt});
  if ((vlan != 0 || !trunk.empty()) && !preserve_default) {
    // A new port of a filtering bridge gets the bridge's default PVID (1) untagged.
    try {
      nl::bridge_vlan_del(host, port.ifindex, {{1, 0, false, false}});
    } catch (const Error& e) {
      spdlog::debug("no default VLAN on {}: {}", port.name, e.what());
    }
  }
  if (vlan != 0) {
    nl::bridge_vlan_add(host, port.ifindex,
                        {{static_cast<uint16_t>(vlan), 0, /*pvid=*/true, /*untagged=*/true}});
  }
  std::vector<nl::BridgeVlan> tagged;
  for (int v : trunk) tagged.push_back({static_cast<uint16_t>(v), 0, false, false});
  if (!tagged.empty()) nl::bridge_vlan_add(host, port.ifindex, tagged);
  if (vlan == 0 && !trunk.empty()) {
    // No access VLAN on a trunk: the native VLAN is 1, as in the reference.
    nl::bridge_vlan_add(host, port.ifindex, {{1, 0, true, true}});
  }
}

// Creates a veth pair with a random local name; the peer (`peer_name` in `peer_ns`) must not
// exist. Retries on a clash of the random name, like the reference's 10 attempts.
nl::Link create_pair(nl::Socket& host, const std::string& peer_name, const NetnsFd& peer_ns,
                     unsigned mtu, const std::optional<std::string>& peer_mac) {
  for (int attempt = 0;; ++attempt) {
    std::string name = random_veth_name();
    if (nl::get_link(host, name)) continue;
    try {
      return nl::create_veth(host, {name, peer_name, mtu, std::nullopt, peer_mac}, peer_ns);
    } catch (const Error&) {
      // Another process took the name between our look and our create: try another one.
      if (attempt < 10 && nl::get_link(host, name)) continue;
      throw;
    }
  }
}

int family_of(const Prefix& p) { return p.addr().is_v4() ? AF_INET : AF_INET6; }

bool prefix_contains(const nl::Address& a, const Prefix& p) {
  auto addr = IpAddr::parse(a.ip);
  if (!addr) return false;
  Prefix have(*addr, a.prefix_len);
  return have.contains(p.addr()) || p.contains(*addr);
}

void settle_addresses(nl::Socket& cont, int ifindex) {
  // DAD is on (enabledad): wait until no address is tentative, up to 5 s like the reference.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    bool tentative = false;
    for (const nl::Address& a : nl::list_addresses(cont, ifindex, AF_INET6)) {
      if ((a.flags & IFA_F_DADFAILED) != 0) {
        throw Error(kErrInternal, "duplicate address detected", a.cidr());
      }
      tentative = tentative || (a.flags & IFA_F_TENTATIVE) != 0;
    }
    if (!tentative) return;
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(kErrInternal, "failed to settle addresses", "IPv6 DAD did not complete in 5 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string random_mac() {
  uint8_t b[6];
  random_bytes(b, sizeof b);
  b[0] = static_cast<uint8_t>((b[0] & 0xfe) | 0x02);  // unicast, locally administered
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                b[5]);
  return buf;
}

std::string random_veth_name() {
  uint8_t b[4];
  random_bytes(b, sizeof b);
  char buf[16];
  std::snprintf(buf, sizeof buf, "veth%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
  return buf;
}

nl::Link setup_bridge(nl::Socket& host, const Config& cfg) {
  // Look first: on all but the first ADD the bridge exists, and a refused create costs more.
  auto existing = nl::get_link(host, cfg.bridge);
  nl::Link br =
      existing && existing->kind == "bridge"
          ? *existing
          : nl::ensure_bridge(host, {cfg.bridge, cfg.mtu, random_mac(), cfg.vlan_filtering()});
  if (cfg.vlan_filtering()) nl::set_bridge_vlan_filtering(host, br.ifindex, true);
  if (cfg.promisc_mode) nl::set_promisc(host, br.ifindex, true);
  try_sysctl(nl::iface_sysctl("ipv6", cfg.bridge, "accept_ra"), "0");
  if (!br.up()) nl::set_link_up(host, br.ifindex);
  return nl::require_link(host, cfg.bridge);
}

VethPair setup_veth(nl::Socket& host, nl::Socket& cont, const NetnsFd& netns, const nl::Link& br,
                    const Config& cfg, const std::string& ifname) {
  if (nl::get_link(cont, ifname)) {
    throw Error(kErrInternal, "container veth name provided (" + ifname + ") already exists");
  }
  VethPair pair;
  pair.host = create_pair(host, ifname, netns, cfg.mtu, cfg.mac);
  try {
    pair.container = nl::require_link(cont, ifname);
    setup_port(host, pair.host, br, cfg.hairpin_mode, cfg.isolated_port(), cfg.vlan, cfg.vlan_trunk,
               cfg.preserve_default_vlan);
    nl::set_link_up(host, pair.host.ifindex);
  } catch (...) {
    nl::delete_link(host, pair.host.name);
    throw;
  }
  return pair;
}

Gateways calc_gateways(Result& result, const Config& cfg) {
  Gateways gws;
  bool default_v4 = false;
  bool default_v6 = false;
  for (IpConfig& ipc : result.ips) {
    const bool v4 = ipc.address.addr().is_v4();
    ipc.interface = 2;
    if (!ipc.gateway && cfg.is_gateway) ipc.gateway = ipc.address.network().addr().next();
    bool& found = v4 ? default_v4 : default_v6;
    if (cfg.is_default_gateway && !found) {
      const Prefix any(v4 ? IpAddr::v4(0) : *IpAddr::parse("::"), 0);
      for (const Route& r : result.routes) {
        found = found || (r.gw && r.dst.network() == any);
      }
      if (!found) {
        Route def;
        def.dst = any;
        def.gw = ipc.gateway;
        result.routes.push_back(def);
        found = true;
      }
    }
    if (cfg.is_gateway) {
      (v4 ? gws.v4 : gws.v6).push_back(Prefix(*ipc.gateway, ipc.address.len()));
    }
  }
  return gws;
}

void configure_container(nl::Socket& cont, const Config& cfg, const std::string& ifname,
                         const Result& result) {
  const nl::Link link = nl::require_link(cont, ifname);
  if (cfg.enable_dad) {
    try_sysctl(nl::iface_sysctl("ipv6", ifname, "enhanced_dad"), "1");
    try_sysctl(nl::iface_sysctl("ipv6", ifname, "accept_dad"), "1");
  } else {
    try_sysctl(nl::iface_sysctl("ipv6", ifname, "accept_dad"), "0");
  }
  try_sysctl(nl::iface_sysctl("ipv4", ifname, "arp_notify"), "1");

  std::optional<IpAddr> gw4, gw6;
  bool ipv6_enabled = false;
  for (const IpConfig& ipc : result.ips) {
    const bool v4 = ipc.address.addr().is_v4();
    if (!v4 && !ipv6_enabled) {
      for (const std::string& dev : {std::string("lo"), ifname}) {
        auto key = nl::iface_sysctl("ipv6", dev, "disable_ipv6");
        if (nl::read_sysctl(key).value_or("0") != "0") nl::write_sysctl(key, "0");
      }
      nl::write_sysctl(nl::iface_sysctl("ipv6", ifname, "keep_addr_on_down"), "1");
      ipv6_enabled = true;
    }
    // Without DAD (the default) the address is usable at once: no tentative period to wait for.
    nl::add_address(cont, link.ifindex, ipc.address.str(), {.nodad = !cfg.enable_dad});
    if (ipc.gateway) {
      auto& gw = v4 ? gw4 : gw6;
      if (!gw) gw = ipc.gateway;
    }
  }
  nl::set_link_up(cont, link.ifindex);
  if (gw6 && cfg.enable_dad) settle_addresses(cont, link.ifindex);

  for (const Route& r : result.routes) {
    const bool v4 = r.dst.addr().is_v4();
    nl::Route route;
    route.family = v4 ? AF_INET : AF_INET6;
    route.dst = r.dst.network().str();
    auto gw = r.gw ? r.gw : (v4 ? gw4 : gw6);
    if (gw) route.gateway = gw->str();
    route.oif = link.ifindex;
    route.priority = static_cast<uint32_t>(r.priority.value_or(0));
    route.mtu = static_cast<uint32_t>(r.mtu.value_or(0));
    route.advmss = static_cast<uint32_t>(r.advmss.value_or(0));
    if (r.table) route.table = static_cast<uint32_t>(*r.table);
    if (r.scope) route.scope = static_cast<uint8_t>(*r.scope);
    nl::add_route(cont, route);
  }
}

void set_container_up(nl::Socket& cont, const std::string& ifname) {
  nl::set_link_up(cont, nl::require_link(cont, ifname).ifindex);
}

nl::Link ensure_vlan_gateway(nl::Socket& host, const nl::Link& br, const Config& cfg) {
  const std::string name = cfg.bridge + "." + std::to_string(cfg.vlan);
  if (auto link = nl::get_link(host, name)) return *link;
  if (name.size() > 15) {
    throw Error(kErrInvalidConfig, "failed to create vlan interface",
                "name " + name + " is longer than 15 bytes");
  }
  NetnsFd here = NetnsFd::current();
  nl::Link port = create_pair(host, name, here, br.mtu, std::nullopt);
  try {
    setup_port(host, port, br, false, false, cfg.vlan, {}, cfg.preserve_default_vlan);
    nl::set_link_up(host, port.ifindex);
    nl::Link gw = nl::require_link(host, name);
    nl::set_link_up(host, gw.ifindex);
    return nl::require_link(host, name);
  } catch (...) {
    nl::delete_link(host, port.name);
    throw;
  }
}

void ensure_gateway_address(nl::Socket& host, const nl::Link& dev, const Prefix& gw, bool force) {
  const int family = family_of(gw);
  for (const nl::Address& a : nl::list_addresses(host, dev.ifindex, family)) {
    auto addr = IpAddr::parse(a.ip);
    if (addr && *addr == gw.addr() && a.prefix_len == gw.len()) return;
    if (family == AF_INET || prefix_contains(a, gw)) {
      if (!force) {
        throw Error(kErrInternal, "failed to set bridge addr",
                    "\"" + dev.name + "\" already has an IP address different from " + gw.str());
      }
      nl::delete_address(host, dev.ifindex, a.cidr());
    }
  }
  // A concurrent ADD may add the same address first; the gateway needs no DAD either.
  nl::add_address(host, dev.ifindex, gw.str(), {.nodad = true, .tolerate_exists = true});
}

void enable_forwarding(bool v6) {
  const char* key = v6 ? "net/ipv6/conf/all/forwarding" : "net/ipv4/ip_forward";
  if (nl::read_sysctl(key).value_or("") != "1") nl::write_sysctl(key, "1");
}

nl::Link wait_oper_up(nl::Socket& host, const std::string& name) {
  nl::Link link;
  // Finer first steps than the reference's: the carrier is usually up within a millisecond.
  for (int ms : {0, 1, 2, 5, 10, 30, 50, 400, 1000, 1000}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    link = nl::require_link(host, name);
    if ((link.flags & IFF_RUNNING) != 0) return link;
  }
  throw Error(kErrInternal, "bridge port in error state", name + " is not operationally up");
}

}  // namespace cni::bridge
