#include "plugins/bridge/bridge.h"

#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/ip.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/error.h"
#include "common/mac.h"
#include "common/rtnl.h"

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
                     unsigned mtu, const std::optional<Mac>& peer_mac) {
  for (int attempt = 0;; ++attempt) {
    std::string name = random_veth_name();
    if (nl::get_link(host, name)) continue;
    nl::Link link;
    try {
      link = nl::create_veth(host, {name, peer_name, mtu, std::nullopt, peer_mac}, peer_ns);
    } catch (const Error&) {
      // Another process took the name between our look and our create: try another one.
      if (attempt < 10 && nl::get_link(host, name)) continue;
      throw;
    }
    // The host end is a bridge port: IPv6 never runs on it (the bridge takes its frames), so a
    // link-local address there is only a route, a DAD run and a multicast join per container,
    // and an entry in every address dump of the host. Set while the link is still down, before
    // the kernel would generate one. Best effort: without IPv6 there is nothing to switch off.
    try {
      nl::set_ipv6_addr_gen_mode(host, link.ifindex, IN6_ADDR_GEN_MODE_NONE);
    } catch (const Error& e) {
      spdlog::debug("addr_gen_mode on {}: {}", link.name, e.what());
    }
    return link;
  }
}

int family_of(const Prefix& p) { return p.addr().is_v4() ? AF_INET : AF_INET6; }

bool prefix_contains(const nl::Address& a, const Prefix& p) {
  return a.cidr().contains(p.addr()) || p.contains(a.ip);
}

void settle_addresses(nl::Socket& cont, int ifindex) {
  // DAD is on (enabledad): wait until no address is tentative, up to 5 s like the reference.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    bool tentative = false;
    for (const nl::Address& a : nl::list_addresses(cont, ifindex, AF_INET6)) {
      if ((a.flags & IFA_F_DADFAILED) != 0) {
        throw Error(kErrInternal, "duplicate address detected", a.cidr().str());
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
  const bool found = existing && existing->kind == "bridge";
  nl::Link br = found ? *existing
                      : nl::ensure_bridge(
                            host, {cfg.bridge, cfg.mtu, Mac::random_local(), cfg.vlan_filtering()});
  if (cfg.vlan_filtering()) nl::set_bridge_vlan_filtering(host, br.ifindex, true);
  if (cfg.promisc_mode) nl::set_promisc(host, br.ifindex, true);
  // The bridge's routes are ours, not a router advertisement's. Only when this call made the
  // bridge (or raced another call making it): every /proc/sys lookup costs more with every
  // network namespace on the host, and the reference's per-ADD write changes nothing after the
  // first.
  if (!found) try_sysctl(nl::iface_sysctl("ipv6", cfg.bridge, "accept_ra"), "0");
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

namespace {

// DAD as configured (IPv6 knobs, best effort) and gratuitous ARP on address changes.
void set_dad_and_arp_notify(nl::Socket& cont, const nl::SysctlDir& v6conf, const Config& cfg,
                            const std::string& ifname, int ifindex) {
  auto try_v6 = [&](const std::string& knob, const char* value) {
    try {
      v6conf.write(ifname + "/" + knob, value);
    } catch (const Error& e) {
      spdlog::debug("sysctl ipv6 {}={}: {}", knob, value, e.what());
    }
  };
  if (cfg.enable_dad) {
    try_v6("enhanced_dad", "1");
    try_v6("accept_dad", "1");
  } else {
    try_v6("accept_dad", "0");
  }
  try {
    nl::set_ipv4_devconf(cont, ifindex, IPV4_DEVCONF_ARP_NOTIFY, 1);
  } catch (const Error& e) {
    spdlog::debug("arp_notify on {}: {}", ifname, e.what());
  }
}

// The first gateway of each family among the result's addresses.
struct FirstGateways {
  std::optional<IpAddr> v4, v6;
};

// Every address of the result on the interface (IPv6 enabled first when there is one).
FirstGateways add_container_addresses(nl::Socket& cont, const nl::SysctlDir& v6conf,
                                      const Config& cfg, const std::string& ifname, int ifindex,
                                      const Result& result) {
  FirstGateways gws;
  bool ipv6_enabled = false;
  for (const IpConfig& ipc : result.ips) {
    const bool v4 = ipc.address.addr().is_v4();
    if (!v4 && !ipv6_enabled) {
      for (const std::string& dev : {std::string("lo"), ifname}) {
        const std::string key = dev + "/disable_ipv6";
        if (v6conf.read(key).value_or("0") != "0") v6conf.write(key, "0");
      }
      v6conf.write(ifname + "/keep_addr_on_down", "1");
      ipv6_enabled = true;
    }
    // Without DAD (the default) the address is usable at once: no tentative period to wait for.
    nl::add_address(cont, ifindex, ipc.address, {.nodad = !cfg.enable_dad});
    if (ipc.gateway) {
      auto& gw = v4 ? gws.v4 : gws.v6;
      if (!gw) gw = ipc.gateway;
    }
  }
  return gws;
}

// The result's routes through the interface; a route without a gateway takes its family's first.
void add_container_routes(nl::Socket& cont, int ifindex, const Result& result,
                          const FirstGateways& gws) {
  for (const Route& r : result.routes) {
    const bool v4 = r.dst.addr().is_v4();
    nl::Route route;
    route.family = v4 ? AF_INET : AF_INET6;
    route.dst = r.dst.network();
    route.gateway = r.gw ? r.gw : (v4 ? gws.v4 : gws.v6);
    route.oif = ifindex;
    route.priority = static_cast<uint32_t>(r.priority.value_or(0));
    route.mtu = static_cast<uint32_t>(r.mtu.value_or(0));
    route.advmss = static_cast<uint32_t>(r.advmss.value_or(0));
    if (r.table) route.table = static_cast<uint32_t>(*r.table);
    if (r.scope) route.scope = static_cast<uint8_t>(*r.scope);
    nl::add_route(cont, route);
  }
}

}  // namespace

void configure_container(nl::Socket& cont, const Config& cfg, const std::string& ifname,
                         const Result& result) {
  const nl::Link link = nl::require_link(cont, ifname);
  // One walk through /proc/sys for every IPv6 knob (there is no rtnetlink setter for them); the
  // IPv4 one over rtnetlink.
  const nl::SysctlDir v6conf("net/ipv6/conf");
  set_dad_and_arp_notify(cont, v6conf, cfg, ifname, link.ifindex);
  const FirstGateways gws =
      add_container_addresses(cont, v6conf, cfg, ifname, link.ifindex, result);
  nl::set_link_up(cont, link.ifindex);
  if (gws.v6 && cfg.enable_dad) settle_addresses(cont, link.ifindex);
  add_container_routes(cont, link.ifindex, result, gws);
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
    if (a.ip == gw.addr() && a.prefix_len == gw.len()) return;
    if (family == AF_INET || prefix_contains(a, gw)) {
      if (!force) {
        throw Error(kErrInternal, "failed to set bridge addr",
                    "\"" + dev.name + "\" already has an IP address different from " + gw.str());
      }
      nl::delete_address(host, dev.ifindex, a.cidr());
    }
  }
  // A concurrent ADD may add the same address first; the gateway needs no DAD either.
  nl::add_address(host, dev.ifindex, gw, {.nodad = true, .tolerate_exists = true});
}

void enable_forwarding(nl::Socket& host, bool v6) {
  const char* key = v6 ? "net/ipv6/conf/all/forwarding" : "net/ipv4/ip_forward";
  // Read over rtnetlink (RTM_GETNETCONF): on all but the first ADD it is on already.
  std::optional<bool> on = nl::get_forwarding(host, v6 ? AF_INET6 : AF_INET);
  if (!on) on = nl::read_sysctl(key).value_or("") == "1";
  if (!*on) nl::write_sysctl(key, "1");
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
