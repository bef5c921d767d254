#pragma once
// The bridge plugin's CNI verbs. main.cc maps them; the work is in bridge.cc (links, addresses,
// routes), firewall.cc (nftables) and state.cc (per-attachment state).
#include "common/skel.h"
#include "common/types.h"

namespace cni::bridge {

// Bridge, veth pair, IPAM ADD, container addresses and routes, gateway, firewall. Any failure
// undoes what was done (firewall elements, state file, IPAM DEL, the veth pair).
Result cmd_add(const CmdArgs& args);
// Idempotent; works with an empty CNI_NETNS, a vanished netns and no prevResult. IPAM DEL
// first (as the reference), then the firewall elements, the veth pair and the state file; every
// step is tried whatever the others do, and the first failure is reported after them.
void cmd_del(const CmdArgs& args);
void cmd_check(const CmdArgs& args);
// IPAM's STATUS, then code 50 when the config needs nftables and it cannot be used.
void cmd_status(const CmdArgs& args);
// IPAM's GC, then the firewall state of every attachment not in the valid list.
void cmd_gc(const CmdArgs& args);

}  // namespace cni::bridge
