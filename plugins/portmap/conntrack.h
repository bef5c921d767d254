#pragma once
// Flushing UDP conntrack entries of published ports over ctnetlink, in the calling netns.
//
// Why: a UDP client that sent to hostIP:hostPort before the mapping existed keeps an entry that
// is not NATed, and conntrack keeps matching its packets to that entry for as long as it keeps
// sending (plugins#123); after DEL, entries NATed to the gone container black-hole the same way.
//
// Why libmnl and not libnetfilter_conntrack: the plugin already links libmnl for nftables, the
// whole job is one dump and a few deletes with a handful of attributes, and one more shared
// library costs start-up time and RSS on every plugin run (DESIGN.md, principle 2), while
// nothing else in tether needs conntrack.
#include <cstddef>
#include <vector>

#include "plugins/portmap/plan.h"

namespace cni::mnl {
class Socket;
}

namespace cni::portmap {

// Deletes the UDP entries whose original destination port is in one of `targets` (and whose
// original destination address is the target's host address, when it has one), through `sock`,
// a netfilter socket of the netns (the one the nftables work used: common/mnl.h says why one
// socket per process). Returns how many entries were deleted; an entry that vanished meanwhile
// is not an error. Throws Error on a netlink failure, and what an allocation throws.
size_t flush_udp_conntrack(mnl::Socket& sock, const std::vector<FlushTarget>& targets);

}  // namespace cni::portmap
