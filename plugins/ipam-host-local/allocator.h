#pragma once
// What host-local does with the lease store, verb by verb. Every function expects the store to
// be open, i.e. its directory locked, for the whole call: one lock per CNI call (the reference
// takes it once per range set) makes a multi-set ADD all-or-nothing for concurrent callers too.
#include <vector>

#include "common/types.h"
#include "plugins/ipam-host-local/config.h"
#include "plugins/ipam-host-local/lease_store.h"

namespace cni::hostlocal {

// ADD: one address per range set, in set order — the requested address that falls in the set,
// else the next free one round-robin after last_reserved_ip.<set>. On any error nothing is
// left written: no lease and every last_reserved_ip untouched. Errors (messages as the
// reference's): requested address outside every set, or the gateway → 7; requested address
// taken, or a set exhausted → 50; the attachment already holds an address in a set →
// kErrDuplicateAllocation; write failures → 5.
std::vector<IpConfig> allocate(LeaseStore& store, const Config& config, const Attachment& who);

// DEL: releases every lease held by `who`, in any set (and, when there is none, the legacy
// leases naming only its container ID). Returns how many were released.
size_t release(LeaseStore& store, const Attachment& who);

// CHECK: whether `who` (or its container ID, for legacy leases) holds any lease.
bool holds(LeaseStore& store, const Attachment& who);

// GC: releases every lease whose holder is not in `valid` (legacy leases match on the container
// ID alone). lock and last_reserved_ip.* are not leases and stay. Returns how many were
// released.
//
// ADD, DEL and GC first remove what only a killed writer leaves behind: hidden temp files and
// empty lease files.
size_t collect_garbage(LeaseStore& store, const std::vector<Attachment>& valid);

// STATUS: throws Error code 50 naming the first range set with no free address.
void check_available(const LeaseStore& store, const Config& config);

inline constexpr int kErrDuplicateAllocation = 100;

}  // namespace cni::hostlocal
