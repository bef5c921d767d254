#pragma once
// tether's nftables state for bridge networks: ICC, internal, isolate and masquerade in one
// `inet` table, the MAC spoof check in one `bridge` table of the same name. README.md draws the
// layout. Per-packet matching goes through sets and verdict maps keyed by interface name or
// address, so the cost per packet and per call stays flat as containers are added; the rules
// themselves are fixed and written once per table.
//
// Every mutating call is one nftables batch (nft::run: its reads and commit under tether's
// host-wide commit lock; other programs' commits do not make it fail). Elements are read by key,
// never by dumping a set, so that the lock is held briefly and a call's cost does not grow with
// the number of containers.
#include <optional>
#include <string>
#include <vector>

#include "common/mnl.h"
#include "plugins/bridge/state.h"

namespace cni::bridge {

// How one bridge's traffic is filtered; shared by every attachment of that bridge.
struct BridgePolicy {
  std::vector<std::string> ifaces;  // the bridge (+ VLAN gateway interface)
  bool icc = true;
  bool internal = false;
  bool isolate = false;
  // The network's VXLAN devices (overlay): one network with the bridge across hosts. Traffic
  // between the bridge and them is "same network" (icc decides); they join the bridge in
  // bridges/internal/isolated, and everything of an overlay is in `overlays`, which never
  // forwards to another overlay's interfaces.
  std::vector<std::string> overlay_links{};
};

class NftFirewall {
 public:
  explicit NftFirewall(std::string table) : table_(std::move(table)) {}

  // ADD: creates the table skeleton when missing (or repairs its fixed rules), sets the bridge's
  // policy elements, adds the attachment's elements and drops those of `replaced` (a stale state
  // of the same attachment) that the new state does not have.
  void add(const BridgePolicy& policy, const AttachmentState& state,
           const std::optional<AttachmentState>& replaced = std::nullopt) const;
  // DEL/GC: removes the attachments' elements. Elements already gone are fine; a missing table
  // means there is nothing to remove. Bridge policy elements stay: they belong to the bridge.
  void remove(const std::vector<AttachmentState>& states) const;
  // As above on the caller's netfilter socket, opened into `sock` only when there is something
  // to remove: the caller decides when it is released, and with it when the release's wait for
  // an RCU grace period comes (common/mnl.h; DEL keeps it past its veth delete).
  void remove(const std::vector<AttachmentState>& states, std::optional<mnl::Socket>& sock) const;
  // GC: removes the policy elements of a bridge that no longer exists (and of its pairs with
  // `overlay_links`).
  void remove_bridge(const std::vector<std::string>& ifaces,
                     const std::vector<std::string>& overlay_links = {}) const;
  // CHECK: everything that is wrong, empty when the state is all there.
  std::vector<std::string> verify(const BridgePolicy& policy, const AttachmentState& state) const;
  // STATUS: throws Error code 50 when nftables cannot be used (no nf_tables, no privilege).
  static void probe();

  const std::string& table() const { return table_; }

 private:
  std::string table_;
};

}  // namespace cni::bridge
