#pragma once
// The CNI verbs of dns-sidecar, a chained plugin: each registers or unregisters the attachment
// with the shared daemon (started on demand) and ADD points the container's DNS at it. main.cc
// maps them; the daemon is reached through daemon_client.cc, the records kept by registry.cc.
#include "common/skel.h"

namespace cni::dns {

// CHECK: the attachment has no registration (plugin-specific code).
inline constexpr int kErrNotRegistered = 100;

Result cmd_add(const CmdArgs& args);
void cmd_del(const CmdArgs& args);
void cmd_check(const CmdArgs& args);
void cmd_status(const CmdArgs& args);
void cmd_gc(const CmdArgs& args);

}  // namespace cni::dns
