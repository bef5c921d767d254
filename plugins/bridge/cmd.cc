#include "plugins/bridge/cmd.h"

#include <linux/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>

#include "common/error.h"
#include "common/invoke.h"
#include "common/netlink.h"
#include "common/netns.h"
#include "plugins/bridge/bridge.h"
#include "plugins/bridge/config.h"
#include "plugins/bridge/firewall.h"
#include "plugins/bridge/state.h"

namespace cni::bridge {
namespace {

// Undo steps of a half-done ADD, run in reverse order unless the ADD completed. A failing undo
// step is logged and the others still run: the ADD's own error is the one to report.
class Rollback {
 public:
  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() {
    if (done_) return;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      try {
        (*it)();
      } catch (const std::exception& e) {
        spdlog::warn("rollback step failed: {}", e.what());
      }
    }
  }
  void add(std::function<void()> step) { steps_.push_back(std::move(step)); }
  void commit() { done_ = true; }

 private:
  std::vector<std::function<void()>> steps_;
  bool done_ = false;
};

BridgePolicy policy_of(const Config& cfg, const std::vector<std::string>& ifaces) {
  return {ifaces, cfg.icc, cfg.internal, cfg.isolate};
}

// The firewall interfaces of an attachment in `cfg`: the bridge, and the VLAN gateway interface
// when it exists (isGateway with a vlan).
std::vector<std::string> fw_ifaces_of(const Config& cfg) {
  std::vector<std::string> out = {cfg.bridge};
  if (cfg.is_gateway && cfg.vlan != 0) out.push_back(cfg.bridge + "." + std::to_string(cfg.vlan));
  return out;
}

Interface host_iface(const nl::Link& link) {
  Interface i;
  i.name = link.name;
  i.mac = link.mac;
  return i;
}

}  // namespace

Result cmd_add(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  nl::Socket host = nl::Socket::open();
  nl::Link br = setup_bridge(host, cfg);

  const NetnsFd netns = NetnsFd::open(args.netns);
  nl::Socket cont = in_netns(netns, [] { return nl::Socket::open(); });
  VethPair veth = setup_veth(host, cont, netns, br, cfg, args.ifname);
  // Declared after everything its steps refer to, so that it runs before they are destroyed;
  // steps capture anything shorter-lived by value.
  Rollback rollback;
  // Deleting the host end takes the container end with it.
  rollback.add([&host, name = veth.host.name] { nl::delete_link(host, name); });

  Result result;
  result.interfaces = {host_iface(br), host_iface(veth.host), host_iface(veth.container)};
  result.interfaces[2].name = args.ifname;
  result.interfaces[2].sandbox = args.netns;

  if (cfg.layer3()) {
    Result ipam = delegate_add(cfg.ipam_type, args, args.stdin_data);
    rollback.add([&cfg, &args] { delegate(cfg.ipam_type, "DEL", args, args.stdin_data); });
    if (ipam.ips.empty()) throw Error(kErrInternal, "IPAM plugin returned missing IP config");
    result.ips = ipam.ips;
    result.routes = ipam.routes;
    result.dns = ipam.dns;
    const Gateways gws = calc_gateways(result, cfg);
    in_netns(netns, [&] { configure_container(cont, cfg, args.ifname, result); });
    if (cfg.is_gateway) {
      nl::Link gw_dev = br;
      if (cfg.vlan != 0 && !(gws.v4.empty() && gws.v6.empty())) {
        gw_dev = ensure_vlan_gateway(host, br, cfg);
        result.interfaces.push_back(host_iface(gw_dev));
      }
      for (const auto* family : {&gws.v4, &gws.v6}) {
        for (const Prefix& gw : *family)
          ensure_gateway_address(host, gw_dev, gw, cfg.force_address);
      }
      if (!gws.v4.empty()) enable_forwarding(false);
      if (!gws.v6.empty()) enable_forwarding(true);
    }
  } else if (!cfg.disable_container_interface) {
    in_netns(netns, [&] { set_container_up(cont, args.ifname); });
  }

  if (cfg.uses_nft()) {
    const std::string dir = cfg.network_state_dir();
    AttachmentState state;
    state.container_id = args.container_id;
    state.ifname = args.ifname;
    state.bridge = cfg.bridge;
    state.fw_ifaces = fw_ifaces_of(cfg);
    state.host_veth = veth.host.name;
    state.container_mac = veth.container.mac;
    state.spoofchk = cfg.macspoofchk;
    if (cfg.masquerade()) {
      for (const IpConfig& ipc : result.ips) state.masq_ips.push_back(ipc.address.addr().str());
    }
    // A state file left by an ADD that was never deleted: its elements go in the same batch.
    const std::optional<AttachmentState> old = load_state(dir, args.container_id, args.ifname);
    save_state(dir, state);
    rollback.add([dir, old, &args] {
      if (old) {
        save_state(dir, *old);
      } else {
        remove_state(dir, args.container_id, args.ifname);
      }
    });
    const NftFirewall fw(cfg.nft_table);
    fw.add(policy_of(cfg, state.fw_ifaces), state, old);
    rollback.add([fw, state] { fw.remove({state}); });
  }

  if (!cfg.disable_container_interface) veth.host = wait_oper_up(host, veth.host.name);
  // The host end's MAC may change once it is up; the bridge's is read last, as the reference.
  result.interfaces[1].mac = veth.host.mac;
  result.interfaces[0].mac = nl::require_link(host, cfg.bridge).mac;
  if (cfg.dns) result.dns = *cfg.dns;
  rollback.commit();
  return result;
}

void cmd_del(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  const std::string dir = cfg.network_state_dir();
  const std::optional<AttachmentState> state =
      cfg.uses_nft() ? load_state(dir, args.container_id, args.ifname) : std::nullopt;

  if (!args.netns.empty()) {
    std::optional<NetnsFd> netns;
    try {
      netns = NetnsFd::open_if_exists(args.netns);
    } catch (const Error& e) {
      // A path that is no longer a netns (an unmounted bind mount) means the netns is gone.
      spdlog::warn("DEL: {}; cleaning up without it", e.what());
    }
    if (netns) {
      in_netns(*netns, [&] {
        nl::Socket cont = nl::Socket::open();
        nl::delete_link(cont, args.ifname);
      });
    }
  }
  if (state && !state->host_veth.empty()) {
    // CNI_NETNS empty while the netns lives on: the pair is still there. Only a veth that is
    // still a port of our bridge is ours (its random name might have been reused otherwise).
    nl::Socket host = nl::Socket::open();
    auto veth = nl::get_link(host, state->host_veth);
    auto br = nl::get_link(host, state->bridge);
    if (veth && br && veth->kind == "veth" && veth->master == br->ifindex) {
      nl::delete_link(host, veth->name);
    }
  }
  if (state) {
    NftFirewall(cfg.nft_table).remove({*state});
    remove_state(dir, args.container_id, args.ifname);
  }
  if (cfg.layer3()) delegate(cfg.ipam_type, "DEL", args, args.stdin_data);
}

void cmd_check(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  if (!args.conf.prev_result) throw Error(kErrInvalidConfig, "Required prevResult missing");
  if (cfg.layer3()) delegate(cfg.ipam_type, "CHECK", args, args.stdin_data);
  const Result& prev = *args.conf.prev_result;
  auto fail = [](const std::string& what) { throw Error(kErrInternal, "CHECK failed", what); };

  nl::Socket host = nl::Socket::open();
  auto br = nl::get_link(host, cfg.bridge);
  if (!br || br->kind != "bridge") fail("bridge " + cfg.bridge + " not found");
  for (const Interface& i : prev.interfaces) {
    if (i.name == cfg.bridge && i.sandbox.empty() && !i.mac.empty() && i.mac != br->mac) {
      fail("bridge " + cfg.bridge + " MAC " + br->mac + " is not " + i.mac);
    }
  }
  if (((br->flags & IFF_PROMISC) != 0) != cfg.promisc_mode) {
    fail("bridge " + cfg.bridge + " promiscuous mode does not match promiscMode");
  }

  auto ci = prev.container_interface(args.ifname);
  if (!ci) fail("prevResult has no container interface " + args.ifname);
  const Interface& want = prev.interfaces[static_cast<size_t>(*ci)];
  const NetnsFd netns = NetnsFd::open(args.netns);
  nl::Link cont_link;
  std::vector<nl::Address> addrs;
  std::vector<nl::Route> routes;
  in_netns(netns, [&] {
    nl::Socket cont = nl::Socket::open();
    auto l = nl::get_link(cont, args.ifname);
    if (!l) fail("container interface " + args.ifname + " not found in " + args.netns);
    cont_link = *l;
    addrs = nl::list_addresses(cont, l->ifindex);
    for (int family : {AF_INET, AF_INET6}) {
      auto r = nl::list_routes(cont, family, 0, RT_TABLE_UNSPEC);
      routes.insert(routes.end(), r.begin(), r.end());
    }
  });
  if (cont_link.kind != "veth") fail("container interface " + args.ifname + " is not a veth");
  if (!want.mac.empty() && want.mac != cont_link.mac) {
    fail("container interface " + args.ifname + " MAC " + cont_link.mac + " is not " + want.mac);
  }

  // The host end: a veth in prevResult whose peer is the container end, enslaved to the bridge.
  bool found = false;
  for (const Interface& i : prev.interfaces) {
    if (!i.sandbox.empty() || i.name == cfg.bridge) continue;
    auto l = nl::get_link(host, i.name);
    if (!l || l->kind != "veth" || l->ifindex != cont_link.peer_ifindex) continue;
    if (l->master != br->ifindex) fail("host veth " + i.name + " is not a port of " + cfg.bridge);
    if (!i.mac.empty() && i.mac != l->mac) fail("host veth " + i.name + " MAC does not match");
    found = true;
  }
  if (!found) fail("no host veth of " + args.ifname + " on bridge " + cfg.bridge);

  for (const IpConfig& ipc : prev.ips) {
    if (ipc.interface != *ci) continue;
    bool present = std::any_of(addrs.begin(), addrs.end(), [&](const nl::Address& a) {
      return IpAddr::parse(a.ip) == ipc.address.addr() && a.prefix_len == ipc.address.len();
    });
    if (!present) fail("address " + ipc.address.str() + " not found on " + args.ifname);
  }
  for (const Route& r : prev.routes) {
    const std::string dst = r.dst.network().str();
    bool present = std::any_of(routes.begin(), routes.end(), [&](const nl::Route& have) {
      auto gw = have.gateway ? IpAddr::parse(*have.gateway) : std::nullopt;
      return have.dst == dst && (!r.gw || gw == r.gw);
    });
    if (!present) fail("route to " + dst + " not found in " + args.netns);
  }

  if (cfg.uses_nft()) {
    auto state = load_state(cfg.network_state_dir(), args.container_id, args.ifname);
    if (!state)
      fail("tether's firewall state of " + args.container_id + "/" + args.ifname + " is missing");
    auto problems = NftFirewall(cfg.nft_table).verify(policy_of(cfg, state->fw_ifaces), *state);
    if (!problems.empty()) {
      std::string all;
      for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
      fail(all);
    }
  }
}

void cmd_status(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  if (cfg.layer3()) delegate(cfg.ipam_type, "STATUS", args, args.stdin_data);
  if (cfg.uses_nft()) NftFirewall::probe();
}

void cmd_gc(const CmdArgs& args) {
  const Config cfg = Config::parse(args.conf, args.args);
  // GC goes on past a failure and reports every one (SPEC: GC).
  std::vector<std::string> errors;
  int code = 0;
  auto attempt = [&](const std::function<void()>& step) {
    try {
      step();
    } catch (const Error& e) {
      errors.push_back(e.what());
      code = code ? code : e.code();
    }
  };
  if (cfg.layer3()) attempt([&] { delegate(cfg.ipam_type, "GC", args, args.stdin_data); });
  // Without a valid list (cnitool sends none) nothing is known to be stale.
  if (cfg.uses_nft() && cfg.valid_attachments) {
    const std::string dir = cfg.network_state_dir();
    std::vector<AttachmentState> stale;
    for (AttachmentState& s : list_states(dir)) {
      const Attachment a{s.container_id, s.ifname};
      if (std::find(cfg.valid_attachments->begin(), cfg.valid_attachments->end(), a) ==
          cfg.valid_attachments->end()) {
        stale.push_back(std::move(s));
      }
    }
    const NftFirewall fw(cfg.nft_table);
    if (!stale.empty()) {
      attempt([&] {
        fw.remove(stale);
        for (const AttachmentState& s : stale) remove_state(dir, s.container_id, s.ifname);
      });
    }
    attempt([&] {
      nl::Socket host = nl::Socket::open();
      if (!nl::get_link(host, cfg.bridge)) fw.remove_bridge(fw_ifaces_of(cfg));
    });
  }
  if (!errors.empty()) {
    std::string all;
    for (const std::string& e : errors) all += (all.empty() ? "" : "; ") + e;
    throw Error(code, "GC failed", all);
  }
}

}  // namespace cni::bridge
