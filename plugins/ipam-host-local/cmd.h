#pragma once
// The host-local IPAM plugin's CNI verbs, each: parse the config, lock the network's lease
// directory, act. main.cc maps them; the work is in allocator.cc (leases), lease_store.cc (the
// lease directory) and cluster_blocks.cc (cluster mode).
#include "common/skel.h"
#include "common/types.h"

namespace cni::hostlocal {

// CHECK: the attachment holds no lease (plugin-specific code).
inline constexpr int kErrNoLease = 101;

// One address per range set, the routes and the DNS settings (resolvConf, then the config's).
Result cmd_add(const CmdArgs& args);
// Releases every lease the attachment holds; nothing to release is no error.
void cmd_del(const CmdArgs& args);
void cmd_check(const CmdArgs& args);
// Code 50 when the data dir is not writable or no range has a free address.
void cmd_status(const CmdArgs& args);
// Releases the leases of every attachment not in the valid list; nothing without a list.
void cmd_gc(const CmdArgs& args);

// The plugin as plugin_main runs it: its verbs, and what it says about itself. bridge carries
// it too (common/invoke.h, carry_delegate).
Verbs verbs();
inline constexpr const char* kAbout = "host-local v" TETHER_VERSION " (tether)";

}  // namespace cni::hostlocal
