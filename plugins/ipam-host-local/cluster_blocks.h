#pragma once
// host-local's cluster mode (ipam.cluster, issue 11). Each range set is one cluster range (e.g.
// 10.32.0.0/12); this host allocates only inside blocks of it (ipam.blockSize, default 24) that
// tether-agent claimed for it in etcd. The allocation itself is host-local's own, unchanged:
// the blocks become the set's ranges (subnet = block, gateway = block's first address), so the
// lease files, the round-robin hints and every error stay what they are without a cluster.
//
// The blocks this host holds are cached in "<dataDir>/<network>/cluster-blocks.json", read and
// written under the lease directory's lock. An ADD that finds room in a cached block talks to
// nobody (no agent request, no etcd round trip): that keeps working while etcd is down. Only an
// ADD that finds every cached block full (or none cached) asks the agent: first for the blocks
// it already holds, then for a new one (one etcd read and one create-if-absent transaction).
// Codes: 50 when the cluster range has no free block, 11 when etcd (or the agent) cannot be
// reached and a new block is needed.
#include <vector>

#include "plugins/ipam-host-local/config.h"
#include "plugins/ipam-host-local/lease_store.h"

namespace cni::hostlocal {

inline constexpr const char* kBlocksFile = "cluster-blocks.json";

// Config with each cluster range set replaced by the blocks this host holds in it, claiming
// blocks (through the agent) for every set that has no free address left. The store is locked.
Config with_blocks(LeaseStore& store, const Config& config);

// STATUS: code 50 when a set has no free address in its blocks and no block can be claimed,
// 11 when that needs etcd and etcd cannot be reached.
void check_cluster_available(LeaseStore& store, const Config& config);

// GC with ipam.releaseEmptyBlocks: gives every cached block without leases back (agent op
// release); never fails for the agent or etcd (the agent finishes a release when etcd is back).
// Returns how many were given back.
size_t release_empty_blocks(LeaseStore& store, const Config& config);

}  // namespace cni::hostlocal
