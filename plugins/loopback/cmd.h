#pragma once
// The loopback plugin's CNI verbs (main.cc maps them): `lo` up on ADD, down on DEL, checked on
// CHECK. The interface is always `lo` whatever CNI_IFNAME says (containerd sends "lo"), as in the
// reference plugin.
#include <string>

#include "common/skel.h"

namespace cni::loopback {

// Brings `lo` up in CNI_NETNS. The result is prevResult when there is one (passed through),
// else `lo` with its first IPv4 and first IPv6 address (127.0.0.1/8 and ::1/128 in a fresh
// netns; none for a family the netns has disabled). An address on `lo` that is not a loopback
// address is error 999, as in the reference.
Result cmd_add(const CmdArgs& args);

// ADD's stdout, byte for byte the reference's (go_result.h). A result the plugin built is
// printed in libcni 1.0's struct whatever the config's version, with that version's number:
// the reference fills a 1.0.0 struct and sets its cniVersion to the config's, so nothing is
// converted (no ips[].version for 0.3.x/0.4.0, no ip4/ip6 blocks for 0.1.0/0.2.0). A passed
// through prevResult is printed in the struct of the config's version.
std::string print(const Result& result, const CmdArgs& args);

// Brings `lo` down. Succeeds without doing anything when CNI_NETNS is empty or gone.
void cmd_del(const CmdArgs& args);

// `lo` exists and is up in CNI_NETNS; error 999 "loopback interface is down" otherwise.
void cmd_check(const CmdArgs& args);

// STATUS: needs nothing to be ready.
void cmd_status(const CmdArgs& args);

// GC: the plugin keeps no state; the attachment list is still validated (error 7).
void cmd_gc(const CmdArgs& args);

}  // namespace cni::loopback
