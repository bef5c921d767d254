#pragma once
// What the agent publishes about its host, and the hook through which the rest of the agent
// (the overlay's kernel sync) learns about every host of the cluster.
//
// "<prefix>/nodes/<node>" = NodeRecord JSON {"node", "address", "vtepMac", "blocks": [...]},
// written under a lease the agent keeps alive (cluster file leaseTTL): a host that dies or is
// cut off disappears from every other host's view when the lease expires.
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/overlay.h"

namespace cni::agent {

using NodeRecord = overlay::Peer;  // {node, underlay, vtep_mac, blocks}

nlohmann::json node_to_json(const NodeRecord& n);
// nullopt for a record that does not parse (logged by the caller and skipped: one bad record
// must not hide the others).
std::optional<NodeRecord> node_from_json(const std::string& text);

// A consumer of the cluster's peer set. The agent calls sync() from its watch thread, one call
// at a time, with every published node (this host's own record included; `self` names it),
// sorted by node name:
//   - after the first read of etcd and every change of any node's record,
//   - after a re-read following an etcd restart or compaction (the whole set again),
//   - every resync interval (--resync, default 30 s) and on the control op {"op":"resync"},
//     so a sink can repair kernel state someone changed, or pick up a device created later.
// While etcd is unreachable the last set stands and no call is made for it. A sink that throws
// is logged; the next call gives it the whole set again.
class PeerSink {
 public:
  virtual ~PeerSink() = default;
  virtual const char* name() const = 0;
  virtual void sync(const std::vector<NodeRecord>& peers, const std::string& self) = 0;
};

}  // namespace cni::agent
