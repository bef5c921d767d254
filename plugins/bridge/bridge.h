#pragma once
// Links, addresses and routes of one bridge attachment, over rtnetlink (common/netlink.h). The
// steps follow the reference bridge's ADD sequence (anchors §2.1); the verbs in cmd.cc put them
// in order and roll back.
#include <optional>
#include <string>
#include <vector>

#include "common/netlink.h"
#include "common/netns.h"
#include "common/types.h"
#include "plugins/bridge/config.h"

namespace cni::bridge {

// Creates the bridge when missing (a concurrent ADD creating it first is fine) with a random
// fixed MAC, so that its address no longer follows the lowest port's; then promisc, VLAN
// filtering, accept_ra=0 (we own its routes) and up.
nl::Link setup_bridge(nl::Socket& host, const Config& cfg);

struct VethPair {
  nl::Link host;
  nl::Link container;
};

// Creates the pair with the container end named `ifname` directly inside `netns` and the host
// end under a random "veth%08x" name, enslaves the host end with the port flags and VLANs of
// `cfg`, and sets it up. `cont` is a socket opened inside `netns`. Throws when `ifname` exists.
VethPair setup_veth(nl::Socket& host, nl::Socket& cont, const NetnsFd& netns, const nl::Link& br,
                    const Config& cfg, const std::string& ifname);

// Gateway addresses to put on the bridge, per family, as computed by calc_gateways.
struct Gateways {
  std::vector<Prefix> v4;
  std::vector<Prefix> v6;
};

// Completes an IPAM result for the container (the reference's calcGateways): ips[].interface =
// 2; a gateway of subnet+1 when isGateway and IPAM gave none; a default route per family when
// isDefaultGateway and IPAM gave none. Returns the gateway addresses (isGateway only).
Gateways calc_gateways(Result& result, const Config& cfg);

// Inside the container's netns (the calling thread must be there; `cont` opened there): DAD and
// arp_notify sysctls, the addresses (IPv6 enabled first when needed), link up, routes.
void configure_container(nl::Socket& cont, const Config& cfg, const std::string& ifname,
                         const Result& result);

// Sets the container end up without addresses (L2 mode).
void set_container_up(nl::Socket& cont, const std::string& ifname);

// The `<bridge>.<vlan>` gateway interface (a veth whose peer is an access port of `vlan`),
// created when missing. Only for isGateway with vlan != 0.
nl::Link ensure_vlan_gateway(nl::Socket& host, const nl::Link& br, const Config& cfg);

// Puts `gw` on `dev` as the reference's ensureAddr: present already is fine; another IPv4
// address (or an overlapping IPv6 one) is an error unless forceAddress, which replaces it.
void ensure_gateway_address(nl::Socket& host, const nl::Link& dev, const Prefix& gw, bool force);

// net.ipv4.ip_forward / net.ipv6.conf.all.forwarding = 1 (written only when not already 1).
void enable_forwarding(nl::Socket& host, bool v6);

// Waits up to 2.5 s (as the reference) for the host veth to be operationally up.
nl::Link wait_oper_up(nl::Socket& host, const std::string& name);

// A locally administered unicast MAC, and a random host veth name.
std::string random_veth_name();

}  // namespace cni::bridge
