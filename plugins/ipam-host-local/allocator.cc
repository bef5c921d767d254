#include "plugins/ipam-host-local/allocator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "common/error.h"
#include "plugins/ipam-host-local/crash_point.h"

namespace cni::hostlocal {

namespace {

struct Planned {
  size_t set;
  IpAddr ip;
  const Range* range;
};

// DEL and GC release as much as they can (SPEC: "on error continue"), then report every failure.
class Failures {
 public:
  template <class F>
  void attempt(F&& f) {
    try {
      f();
    } catch (const Error& e) {
      details_ += (details_.empty() ? "" : "; ") + std::string(e.what());
    }
  }
  void raise(const std::string& msg) const {
    if (!details_.empty()) throw Error(kErrIo, msg, details_);
  }

 private:
  std::string details_;
};

// The leases, after removing what only a killed writer leaves: temp files (ours) and empty
// lease files (the reference's create-then-write killed in between, or a power cut). Every
// writer, ours and the reference's, writes only while holding the lock we hold now, so neither
// can be a write in progress.
std::vector<Lease> live_leases(LeaseStore& store) {
  store.remove_stale_temps();
  std::vector<Lease> out;
  for (auto& l : store.leases()) {
    if (l.owner.empty()) {
      spdlog::warn("removing empty lease file {}/{}", store.dir(), l.file);
      store.release(l);
      continue;
    }
    out.push_back(std::move(l));
  }
  return out;
}

std::string range_prefix(size_t set) {
  return "failed to allocate for range " + std::to_string(set) + ": ";
}

// Decides the address for every set without writing anything, so that every error the
// reference can raise is raised before the first write. `taken` is every leased address.
std::vector<Planned> plan(const LeaseStore& store, const Config& config, const Attachment& who,
                          const std::vector<Lease>& leases, std::set<IpAddr>& taken) {
  // Requested addresses go to the first set containing them; one per set, the rest stay
  // unfulfilled and fail the ADD below, as in the reference.
  std::vector<std::optional<IpAddr>> requested(config.range_sets.size());
  std::vector<IpAddr> unfulfilled;
  for (const auto& ip : config.requested_ips) {
    bool placed = false;
    for (size_t i = 0; i < config.range_sets.size() && !placed; ++i) {
      if (!requested[i] && range_for(config.range_sets[i], ip)) {
        requested[i] = ip;
        placed = true;
      }
    }
    if (!placed) unfulfilled.push_back(ip);
  }

  std::vector<Planned> out;
  for (size_t i = 0; i < config.range_sets.size(); ++i) {
    const RangeSet& set = config.range_sets[i];
    if (requested[i]) {
      const IpAddr& ip = *requested[i];
      const Range* r = range_for(set, ip);
      if (ip == r->gw()) {
        throw Error(kErrInvalidConfig,
                    range_prefix(i) + "requested ip " + ip.str() + " is subnet's gateway");
      }
      if (taken.count(ip)) {
        throw Error(kErrNotAvailable, range_prefix(i) + "requested IP address " + ip.str() +
                                          " is not available in range set " + set_str(set));
      }
      out.push_back({i, ip, r});
      taken.insert(ip);
      continue;
    }
    // The spec forbids a second ADD for an attachment without a DEL in between.
    for (const auto& l : leases) {
      if ((l.held_by(who) || l.legacy_held_by(who.container_id)) && range_for(set, l.ip)) {
        throw Error(kErrDuplicateAllocation, range_prefix(i) + l.ip.str() +
                                                 " has been allocated to " + who.container_id +
                                                 ", duplicate allocation is not allowed");
      }
    }
    RangeIter it(set, store.last_reserved(i));
    std::optional<RangeIter::Candidate> c;
    while ((c = it.next()) && taken.count(c->ip)) {
    }
    if (!c) {
      throw Error(kErrNotAvailable,
                  range_prefix(i) + "no IP addresses available in range set: " + set_str(set));
    }
    out.push_back({i, c->ip, c->range});
    taken.insert(c->ip);
  }
  if (!unfulfilled.empty()) {
    std::string list;
    for (const auto& ip : unfulfilled) {
      list += ' ';
      list += ip.str();
    }
    throw Error(kErrInvalidConfig, "failed to allocate all requested IPs:" + list,
                "no range set contains the address");
  }
  return out;
}

}  // namespace

std::vector<IpConfig> allocate(LeaseStore& store, const Config& config, const Attachment& who) {
  crash_point("after-lock");
  std::vector<Lease> leases = live_leases(store);
  std::set<IpAddr> taken;
  for (const auto& l : leases) taken.insert(l.ip);
  std::vector<Planned> planned = plan(store, config, who, leases, taken);

  // Leases first, hints after: a failure before the last lease removes the ones written, and
  // the hints are only touched once every lease is in place.
  std::vector<Lease> written;
  try {
    for (const auto& p : planned) {
      if (!store.reserve(p.ip, who)) {
        // Only a writer ignoring the lock can get here.
        throw Error(kErrTryAgainLater, "lease for " + p.ip.str() + " appeared while locked",
                    store.dir());
      }
      written.push_back(Lease{p.ip, lease_file_name(p.ip), {}});
    }
  } catch (...) {
    for (const auto& l : written) {
      try {
        store.release(l);
      } catch (const Error& e) {
        spdlog::error("rollback: {}", e.what());
      }
    }
    throw;
  }
  crash_point("after-all-leases");
  for (const auto& p : planned) {
    // The hint only steers round-robin; failing an ADD whose leases are safely written because
    // the hint could not be updated would trade a real address for a cosmetic one.
    try {
      store.set_last_reserved(p.set, p.ip);
    } catch (const Error& e) {
      spdlog::warn("could not update last_reserved_ip.{}: {}", p.set, e.what());
    }
    crash_point("after-last-reserved");
  }

  std::vector<IpConfig> out;
  for (const auto& p : planned) {
    out.push_back(IpConfig{Prefix(p.ip, p.range->subnet.len()), p.range->gw(), std::nullopt});
  }
  return out;
}

size_t release(LeaseStore& store, const Attachment& who) {
  std::vector<Lease> leases = live_leases(store);
  std::vector<const Lease*> mine;
  for (const auto& l : leases) {
    if (l.held_by(who)) mine.push_back(&l);
  }
  // Files from versions that wrote only the container ID, looked for only when there is no
  // current-format lease, as the reference does.
  if (mine.empty()) {
    for (const auto& l : leases) {
      if (l.legacy_held_by(who.container_id)) mine.push_back(&l);
    }
  }
  Failures failures;
  for (const Lease* l : mine) {
    failures.attempt([&] { store.release(*l); });
    crash_point("after-release");
  }
  failures.raise("failed to release every lease of " + who.container_id);
  return mine.size();
}

bool holds(const LeaseStore& store, const Attachment& who) {
  for (const auto& l : store.leases()) {
    if (l.held_by(who) || l.legacy_held_by(who.container_id)) return true;
  }
  return false;
}

size_t collect_garbage(LeaseStore& store, const std::vector<Attachment>& valid) {
  size_t released = 0;
  Failures failures;
  for (const auto& l : live_leases(store)) {
    bool keep = false;
    for (const auto& a : valid) keep = keep || l.held_by(a) || l.legacy_held_by(a.container_id);
    if (keep) continue;
    spdlog::info("GC: releasing {} (held by {})", l.ip.str(), json(l.owner).dump());
    failures.attempt([&] {
      store.release(l);
      ++released;
    });
    crash_point("after-release");
  }
  failures.raise("GC failed to release every stale lease");
  return released;
}

void check_available(const LeaseStore& store, const Config& config) {
  std::vector<Lease> leases = store.leases();
  for (size_t i = 0; i < config.range_sets.size(); ++i) {
    const RangeSet& set = config.range_sets[i];
    // Free iff the leases inside the set's windows (its gateways are never leased by ADD)
    // number fewer than its allocatable addresses; counting avoids walking a /64.
    uint64_t capacity = 0;
    for (const auto& r : set) {
      uint64_t n = r.allocatable();
      capacity = capacity > UINT64_MAX - n ? UINT64_MAX : capacity + n;
    }
    uint64_t used = 0;
    for (const auto& l : leases) {
      const Range* r = range_for(set, l.ip);
      if (r && l.ip != r->gw()) ++used;
    }
    if (used >= capacity) {
      throw Error(kErrNotAvailable, "no IP addresses available in range set: " + set_str(set),
                  "range set " + std::to_string(i) + ": all " + std::to_string(capacity) +
                      " addresses are leased in " + store.dir());
    }
  }
}

}  // namespace cni::hostlocal
