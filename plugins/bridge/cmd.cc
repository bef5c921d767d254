#include "plugins/bridge/cmd.h"

#include <linux/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <span>
#include <thread>

#include "common/dns_settings.h"
#include "common/error.h"
#include "common/invoke.h"
#include "common/mac.h"
#include "common/mnl.h"
#include "common/netlink.h"
#include "common/netns.h"
#include "common/undo.h"
#include "plugins/bridge/bridge.h"
#include "plugins/bridge/config.h"
#include "plugins/bridge/firewall.h"
#include "plugins/bridge/overlay.h"
#include "plugins/bridge/state.h"

namespace cni::bridge {
namespace {

std::vector<std::string> overlay_links_of(const Config& cfg) {
  if (!cfg.overlay) return {};
  return {cfg.overlay_device()};
}

BridgePolicy policy_of(const Config& cfg, const std::vector<std::string>& ifaces) {
  return {ifaces, cfg.icc, cfg.internal, cfg.isolate, overlay_links_of(cfg)};
}

// The firewall interfaces of an attachment in `cfg`: the bridge, and the VLAN gateway interface
// when it exists (isGateway with a vlan).
std::vector<std::string> fw_ifaces_of(const Config& cfg) {
  std::vector<std::string> out = {cfg.bridge};
  if (cfg.is_gateway && cfg.vlan != 0) out.push_back(cfg.bridge + "." + std::to_string(cfg.vlan));
  return out;
}

// The links this attachment opens: each of its IPv4 addresses to each peer port.
std::vector<LinkRule> link_rules(const Config& cfg, const Result& result) {
  std::vector<LinkRule> out;
  if (cfg.icc) return out;  // nothing is closed, nothing to open
  for (const IpConfig& ipc : result.ips) {
    if (!ipc.address.addr().is_v4()) continue;
    for (const PeerLink& link : cfg.links) {
      for (const LinkPort& p : link.ports) {
        out.push_back({ipc.address.addr().str(), link.peer.str(), p.proto, p.port});
      }
    }
  }
  return out;
}

// Two isolated ports cannot reach each other at L2, ARP included, so linked traffic goes through
// the host: proxy ARP for the bridge's own subnet (RFC 3069 private VLAN, proxy_arp_pvlan)
// answers a container's ARP for a neighbour with the bridge's MAC, at once (proxy_delay 0). The
// forward hook then sees the traffic and icc_false decides. Bridge-wide and left on: without a
// link the routed path is dropped as the bridged one was.
void route_links_through_host(const std::vector<std::string>& ifaces) {
  for (const std::string& iface : ifaces) {
    nl::write_sysctl(nl::iface_sysctl("ipv4", iface, "proxy_arp_pvlan"), "1");
    nl::write_sysctl("net/ipv4/neigh/" + iface + "/proxy_delay", "0");
  }
}

AttachmentKey key_of(const Config& cfg, const CmdArgs& args) {
  return {cfg.network, args.container_id, args.ifname};
}

Interface host_iface(const nl::Link& link) {
  Interface i;
  i.name = link.name;
  i.mac = mac_text(link.mac);
  return i;
}

// Whether a MAC as prevResult writes it names the link's (either case, ':' or '-'); a result
// without one names any.
bool same_mac(const std::string& text, const std::optional<Mac>& mac) {
  return text.empty() || (mac && Mac::parse(text) == *mac);
}

// DEL's link steps. Each returns once the kernel has unregistered the pair, and leaves the
// kernel's deferred work for the delete (an rcu_barrier, most of the delete's time) to a
// detached grandchild, which also holds `keep` (nl::delete_link_detached); true when it did.
//
// The container end, when the netns is still there; a path that is no longer a netns (an
// unmounted bind mount) means the netns is gone, and the pair with it.
bool delete_container_end(const CmdArgs& args, std::span<const int> keep) {
  if (args.netns.empty()) return false;
  std::optional<NetnsFd> netns;
  try {
    netns = NetnsFd::open_if_exists(args.netns);
  } catch (const Error& e) {
    spdlog::warn("DEL: {}; cleaning up without it", e.what());
  }
  if (!netns) return false;
  return in_netns(*netns, [&] {
    nl::Socket cont = nl::Socket::open();
    auto link = nl::get_link(cont, args.ifname);
    return link && nl::delete_link_detached(link->ifindex, link->name, keep);
  });
}

// The host end, found from the state: with CNI_NETNS empty while the netns lives on, the pair
// is still there. Only a veth that is still a port of our bridge is ours (its random name might
// have been reused otherwise).
bool delete_host_end(const AttachmentState& state, std::span<const int> keep) {
  nl::Socket host = nl::Socket::open();
  auto veth = nl::get_link(host, state.host_veth);
  auto br = nl::get_link(host, state.bridge);
  if (veth && br && veth->kind == "veth" && veth->master == br->ifindex) {
    return nl::delete_link_detached(veth->ifindex, veth->name, keep);
  }
  return false;
}

// What ADD works on besides the config: both netlink sockets, the netns, the bridge.
struct Links {
  nl::Socket& host;
  nl::Socket& cont;
  const NetnsFd& netns;
  const nl::Link& br;
};

// The gateway addresses on the bridge, or on its VLAN interface, and forwarding on.
void add_gateway(nl::Socket& host, const nl::Link& br, const Config& cfg, const Gateways& gws,
                 Result& result) {
  nl::Link gw_dev = br;
  if (cfg.vlan != 0 && !(gws.v4.empty() && gws.v6.empty())) {
    gw_dev = ensure_vlan_gateway(host, br, cfg);
    result.interfaces.push_back(host_iface(gw_dev));
  }
  for (const auto* family : {&gws.v4, &gws.v6}) {
    for (const Prefix& gw : *family) ensure_gateway_address(host, gw_dev, gw, cfg.force_address);
  }
  if (!gws.v4.empty()) enable_forwarding(host, false);
  if (!gws.v6.empty()) enable_forwarding(host, true);
}

// IPAM ADD, then the container's addresses and routes, then the gateway.
void add_layer3(const CmdArgs& args, const Config& cfg, const Links& links, Result& result,
                Rollback& rollback) {
  Result ipam = delegate_add(cfg.ipam_type, args, args.stdin_data);
  rollback.add("IPAM DEL",
               [&cfg, &args] { delegate(cfg.ipam_type, "DEL", args, args.stdin_data); });
  if (ipam.ips.empty()) throw Error(kErrInternal, "IPAM plugin returned missing IP config");
  result.ips = ipam.ips;
  result.routes = ipam.routes;
  result.dns = ipam.dns;
  const Gateways gws = calc_gateways(result, cfg);
  in_netns(links.netns, [&] { configure_container(links.cont, cfg, args.ifname, result); });
  if (cfg.is_gateway) add_gateway(links.host, links.br, cfg, gws, result);
}

// The attachment's state file, then its firewall elements (state.h's crash contract).
void add_firewall(const CmdArgs& args, const Config& cfg, const VethPair& veth,
                  const Result& result, Rollback& rollback) {
  const StateStore store = state_store(cfg.state_dir);
  const AttachmentKey key = key_of(cfg, args);
  AttachmentState state;
  state.container_id = args.container_id;
  state.ifname = args.ifname;
  state.bridge = cfg.bridge;
  state.fw_ifaces = fw_ifaces_of(cfg);
  state.host_veth = veth.host.name;
  state.container_mac = mac_text(veth.container.mac);
  state.spoofchk = cfg.macspoofchk;
  if (cfg.masquerade()) {
    for (const IpConfig& ipc : result.ips) state.masq_ips.push_back(ipc.address.addr().str());
    for (const Prefix& p : cfg.masq_exclusions()) state.masq_exclude.push_back(p.str());
  }
  state.links = link_rules(cfg, result);
  if (!state.links.empty()) route_links_through_host(state.fw_ifaces);
  // A state file left by an ADD that was never deleted: its elements go in the same batch.
  const std::optional<AttachmentState> old = store.load(key);
  store.save(key, state);
  rollback.add("restore firewall state file", [store, key, old] {
    if (old) {
      store.save(key, *old);
    } else {
      store.remove(key);
    }
  });
  const NftFirewall fw(cfg.nft_table);
  fw.add(policy_of(cfg, state.fw_ifaces), state, old);
  rollback.add("remove firewall elements", [fw, state] { fw.remove({state}); });
}

[[noreturn]] void check_failed(const std::string& what) {
  throw Error(kErrInternal, "CHECK failed", what);
}

// CHECK: the bridge is there, with the MAC prevResult gives it and the promiscuous mode asked.
nl::Link check_bridge(nl::Socket& host, const Config& cfg, const Result& prev) {
  auto br = nl::get_link(host, cfg.bridge);
  if (!br || br->kind != "bridge") check_failed("bridge " + cfg.bridge + " not found");
  for (const Interface& i : prev.interfaces) {
    if (i.name == cfg.bridge && i.sandbox.empty() && !same_mac(i.mac, br->mac)) {
      check_failed("bridge " + cfg.bridge + " MAC " + mac_text(br->mac) + " is not " + i.mac);
    }
  }
  if (cfg.overlay) check_overlay(host, cfg);
  if (((br->flags & IFF_PROMISC) != 0) != cfg.promisc_mode) {
    check_failed("bridge " + cfg.bridge + " promiscuous mode does not match promiscMode");
  }
  return *br;
}

// What CHECK reads inside the container: its interface, that interface's addresses, the routes.
struct ContainerSide {
  nl::Link link;
  std::vector<nl::Address> addrs;
  std::vector<nl::Route> routes;
};

ContainerSide read_container_side(const CmdArgs& args) {
  const NetnsFd netns = NetnsFd::open(args.netns);
  ContainerSide out;
  in_netns(netns, [&] {
    nl::Socket cont = nl::Socket::open();
    auto l = nl::get_link(cont, args.ifname);
    if (!l) check_failed("container interface " + args.ifname + " not found in " + args.netns);
    out.link = *l;
    out.addrs = nl::list_addresses(cont, l->ifindex);
    for (int family : {AF_INET, AF_INET6}) {
      auto r = nl::list_routes(cont, family, 0, RT_TABLE_UNSPEC);
      out.routes.insert(out.routes.end(), r.begin(), r.end());
    }
  });
  return out;
}

// The host end: a veth in prevResult whose peer is the container end, enslaved to the bridge.
void check_host_end(nl::Socket& host, const Config& cfg, const Result& prev, const nl::Link& br,
                    const nl::Link& cont_link, const std::string& ifname) {
  bool found = false;
  for (const Interface& i : prev.interfaces) {
    if (!i.sandbox.empty() || i.name == cfg.bridge) continue;
    auto l = nl::get_link(host, i.name);
    if (!l || l->kind != "veth" || l->ifindex != cont_link.peer_ifindex) continue;
    if (l->master != br.ifindex) {
      check_failed("host veth " + i.name + " is not a port of " + cfg.bridge);
    }
    if (!same_mac(i.mac, l->mac)) {
      check_failed("host veth " + i.name + " MAC does not match");
    }
    found = true;
  }
  if (!found) check_failed("no host veth of " + ifname + " on bridge " + cfg.bridge);
}

// prevResult's addresses of the container interface `ci` and its routes are in place.
void check_addresses(const Result& prev, int ci, const ContainerSide& cont, const CmdArgs& args) {
  for (const IpConfig& ipc : prev.ips) {
    if (ipc.interface != ci) continue;
    bool present = std::any_of(cont.addrs.begin(), cont.addrs.end(), [&](const nl::Address& a) {
      return a.ip == ipc.address.addr() && a.prefix_len == ipc.address.len();
    });
    if (!present) check_failed("address " + ipc.address.str() + " not found on " + args.ifname);
  }
  for (const Route& r : prev.routes) {
    const Prefix dst = r.dst.network();
    bool present = std::any_of(cont.routes.begin(), cont.routes.end(), [&](const nl::Route& have) {
      return have.dst == dst && (!r.gw || have.gateway == r.gw);
    });
    if (!present) check_failed("route to " + dst.str() + " not found in " + args.netns);
  }
}

// The attachment's firewall state is readable and its elements are in place.
void check_firewall(const Config& cfg, const CmdArgs& args) {
  auto state = state_store(cfg.state_dir).load_checked(key_of(cfg, args));
  if (!state) {
    check_failed("tether's firewall state of " + args.container_id + "/" + args.ifname +
                 " is missing");
  }
  auto problems = NftFirewall(cfg.nft_table).verify(policy_of(cfg, state->fw_ifaces), *state);
  if (!problems.empty()) {
    std::string all;
    for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
    check_failed(all);
  }
}

}  // namespace

Result cmd_add(const CmdArgs& args) {
  Config cfg = Config::parse(args.conf, args.args);
  // The netns first: a CNI_NETNS that is not one must fail the call before anything exists
  // (the reference creates the bridge first and leaves it behind).
  const NetnsFd netns = NetnsFd::open(args.netns);
  nl::Socket host = nl::Socket::open();
  if (cfg.overlay) {
    // The device first: its MTU (underlay - 50 unless `mtu`) is the bridge's and the veths'.
    const overlay::Overlay o = setup_overlay(host, cfg);
    if (cfg.mtu == 0) cfg.mtu = overlay::effective_mtu(host, o);
    // Every range the host's overlay carries (this network's and others' of the same VNI) is
    // cluster traffic: never masqueraded.
    cfg.cluster_ranges = o.ranges;
  }
  nl::Link br = setup_bridge(host, cfg);

  nl::Socket cont = in_netns(netns, [] { return nl::Socket::open(); });
  VethPair veth = setup_veth(host, cont, netns, br, cfg, args.ifname);
  // Declared after everything its steps refer to, so that it runs before they are destroyed;
  // steps capture anything shorter-lived by value.
  Rollback rollback;
  // Deleting the host end takes the container end with it.
  rollback.add("delete veth", [&host, name = veth.host.name] { nl::delete_link(host, name); });

  Result result;
  result.interfaces = {host_iface(br), host_iface(veth.host), host_iface(veth.container)};
  result.interfaces[2].name = args.ifname;
  result.interfaces[2].sandbox = args.netns;

  if (cfg.layer3()) {
    add_layer3(args, cfg, {host, cont, netns, br}, result, rollback);
  } else if (!cfg.disable_container_interface) {
    in_netns(netns, [&] { set_container_up(cont, args.ifname); });
  }
  if (cfg.uses_nft()) add_firewall(args, cfg, veth, result, rollback);

  if (!cfg.disable_container_interface) veth.host = wait_oper_up(host, veth.host.name);
  // The host end's MAC may change once it is up; the bridge's is read last, as the reference.
  result.interfaces[1].mac = mac_text(veth.host.mac);
  result.interfaces[0].mac = mac_text(nl::require_link(host, cfg.bridge).mac);
  // Per field: the runtime's dns capability over the network's dns over what IPAM read from
  // the host's file (common/dns_settings.h).
  result.dns = effective_dns(result.dns, cfg.dns, cfg.runtime_dns);
  rollback.commit();
  return result;
}

namespace {

// bridge DEL's own steps, beside IPAM's (cmd_del), each tried whatever the others do.
void del_steps(const Config& cfg, const CmdArgs& args, ErrorList& errors) {
  // A netfilter socket whose batch deleted anything waits for an RCU grace period at its last
  // release. Its last release is the veth delete's grandchild's, after the kernel's own wait
  // for the delete, which covers it; without one, here at the end.
  std::optional<mnl::Socket> nf;
  const StateStore store = state_store(cfg.state_dir);
  const AttachmentKey key = key_of(cfg, args);
  const std::optional<AttachmentState> state = cfg.uses_nft() ? store.load(key) : std::nullopt;
  // The firewall removal is committed before the veth delete (bench/findings.md, 7).
  bool fw_removed = !state;
  if (state) {
    fw_removed = errors.attempt("remove the firewall elements",
                                [&] { NftFirewall(cfg.nft_table).remove({*state}, nf); });
  }
  const int nf_fd[] = {nf ? nf->fd() : -1};
  bool handed = false;  // a grandchild holds nf
  errors.attempt("delete the container interface",
                 [&] { handed = delete_container_end(args, nf_fd) || handed; });
  if (state && !state->host_veth.empty()) {
    errors.attempt("delete the host veth",
                   [&] { handed = delete_host_end(*state, nf_fd) || handed; });
  }
  if (handed) nf.reset();  // not its last release: no wait
  // The file goes only once its elements are gone: a later DEL or GC still finds them. A
  // corrupt one (no state) names nothing and goes too.
  if (cfg.uses_nft() && fw_removed) {
    errors.attempt("remove the firewall state file", [&] { store.remove(key); });
  }
}

}  // namespace

void cmd_del(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  // The first failure is reported after every step has been tried. IPAM's, as the reference
  // orders it, comes first: nothing else failing may keep the lease. Its child process runs on
  // a thread of its own while this one removes the firewall elements and waits on the kernel's
  // veth delete (most of DEL's time, asleep in rcu_barrier): the two touch nothing in common,
  // and the thread stays in the host's netns, which its child inherits. Its failure is still
  // reported first (ErrorList::append).
  ErrorList errors;
  ErrorList rest;
  {
    std::jthread ipam;
    if (cfg.layer3()) {
      ipam = std::jthread([&] {
        errors.attempt("IPAM DEL", [&] { delegate(cfg.ipam_type, "DEL", args, args.stdin_data); });
      });
    }
    del_steps(cfg, args, rest);
  }  // joins the IPAM thread, also when del_steps throws
  errors.append(rest);
  errors.raise();
}

void cmd_check(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  if (!args.conf.prev_result) throw Error(kErrInvalidConfig, "Required prevResult missing");
  if (cfg.layer3()) delegate(cfg.ipam_type, "CHECK", args, args.stdin_data);
  const Result& prev = *args.conf.prev_result;

  nl::Socket host = nl::Socket::open();
  const nl::Link br = check_bridge(host, cfg, prev);
  auto ci = prev.container_interface(args.ifname);
  if (!ci) check_failed("prevResult has no container interface " + args.ifname);
  const Interface& want = prev.interfaces[static_cast<size_t>(*ci)];
  const ContainerSide cont = read_container_side(args);
  if (cont.link.kind != "veth")
    check_failed("container interface " + args.ifname + " is not a veth");
  if (!same_mac(want.mac, cont.link.mac)) {
    check_failed("container interface " + args.ifname + " MAC " + mac_text(cont.link.mac) +
                 " is not " + want.mac);
  }
  check_host_end(host, cfg, prev, br, cont.link, args.ifname);
  check_addresses(prev, *ci, cont, args);
  if (cfg.uses_nft()) check_firewall(cfg, args);
}

void cmd_status(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  if (cfg.layer3()) delegate(cfg.ipam_type, "STATUS", args, args.stdin_data);
  if (cfg.uses_nft()) NftFirewall::probe();
}

void cmd_gc(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  // GC goes on past a failure and reports every one (SPEC: GC).
  ErrorList errors;
  if (cfg.layer3()) {
    errors.attempt("IPAM GC", [&] { delegate(cfg.ipam_type, "GC", args, args.stdin_data); });
  }
  // Without a valid list (cnitool sends none) nothing is known to be stale.
  if (cfg.uses_nft() && cfg.valid_attachments) {
    const StateStore store = state_store(cfg.state_dir);
    std::vector<AttachmentKey> stale_keys;
    std::vector<AttachmentState> stale;
    for (const AttachmentKey& key : store.list(cfg.network)) {
      const Attachment a{key.container_id, key.ifname};
      if (std::find(cfg.valid_attachments->begin(), cfg.valid_attachments->end(), a) !=
          cfg.valid_attachments->end()) {
        continue;
      }
      stale_keys.push_back(key);
      // A corrupt file names nothing to remove but itself.
      if (auto s = store.load(key)) stale.push_back(std::move(*s));
    }
    const NftFirewall fw(cfg.nft_table);
    if (!stale_keys.empty()) {
      errors.attempt("remove stale firewall state", [&] {
        fw.remove(stale);
        for (const AttachmentKey& k : stale_keys) store.remove(k);
      });
    }
    errors.attempt("remove firewall state of a deleted bridge", [&] {
      nl::Socket host = nl::Socket::open();
      if (!nl::get_link(host, cfg.bridge))
        fw.remove_bridge(fw_ifaces_of(cfg), overlay_links_of(cfg));
    });
  }
  errors.raise("GC failed");
}

}  // namespace cni::bridge
