#pragma once
// The nftables side of portmap: one inet table (config key nftTable) whose few rules look packets
// up in maps keyed by (protocol, [host address,] port), so that the cost per packet and per ADD
// does not grow with the number of published ports. README.md, "nftables layout", draws it.
//
// Every verb holds <stateDir>/lock while it reads and changes the table and the state files, so
// a conflict check and the claim that follows it are one step; each verb commits one batch.
#include <string>
#include <utility>
#include <vector>

#include "common/nft.h"
#include "plugins/portmap/config.h"
#include "plugins/portmap/plan.h"
#include "plugins/portmap/state.h"

namespace cni::portmap {

// Plugin-specific error codes (CNI reserves 100+ for plugins).
inline constexpr int kErrPortConflict = 101;  // a host port another attachment publishes
inline constexpr int kErrNotInPlace = 102;    // CHECK: an element or the layout is missing

// The comment on the table's first base-chain rule: layout version and the conditions the
// base chains were built with. Attachments sharing a table must agree on it.
std::string layout_tag(const Config& config);
// Queues the table, its sets, chains and rules. Idempotent: chains are flushed and refilled.
void queue_layout(nft::NftTransaction& tx, const Config& config);

// ADD: adds the plan's elements, replacing what an earlier ADD of the same attachment added.
// Throws kErrPortConflict, adding nothing, when another attachment publishes one of the keys.
void publish(const Config& config, const Attachment& attachment, const Plan& plan);
// DEL: removes what the attachment's state records; nothing recorded is success.
void unpublish(const Config& config, const Attachment& attachment);
// CHECK: throws kErrNotInPlace unless the layout and every element of the plan are in place.
void verify(const Config& config, const Plan& plan);
// GC: unpublishes every attachment of `network` that is not in `valid` (containerID, ifname).
void collect_garbage(const Config& config, const std::string& network,
                     const std::vector<cni::Attachment>& valid);
// STATUS: throws kErrNotAvailable when nftables or the state directory cannot be used.
void check_ready(const Config& config);

// Sets net.ipv4.conf.<interface routing to container>.route_localnet=1, without which the
// kernel refuses to route 127.0.0.1-sourced packets that DNAT sent off the host.
void enable_route_localnet(const IpAddr& container);

}  // namespace cni::portmap
