#pragma once
// The portmap plugin's CNI verbs, a chained plugin. main.cc maps them; the work is in plan.cc
// (what to publish), portmap.cc (the nftables maps) and state.cc (per-attachment state).
#include "common/skel.h"
#include "common/types.h"

namespace cni::portmap {

// Publishes prevResult's container addresses on the config's port mappings; returns prevResult.
// No mappings, or none for the attachment's families: prevResult untouched (plugins#464).
Result cmd_add(const CmdArgs& args);
// Removes what the attachment's state says was published, not what the mappings say.
void cmd_del(const CmdArgs& args);
// The mappings of prevResult's addresses are in the table.
void cmd_check(const CmdArgs& args);
// Code 50 when nftables cannot be used.
void cmd_status(const CmdArgs& args);
// The elements of every attachment not in the valid list; nothing without a list.
void cmd_gc(const CmdArgs& args);

}  // namespace cni::portmap
