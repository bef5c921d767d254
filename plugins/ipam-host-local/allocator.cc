#include "plugins/ipam-host-local/allocator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <set>

#include "common/crash_point.h"
#include "common/error.h"
#include "common/undo.h"

namespace cni::hostlocal {

namespace {

struct Planned {
  size_t set;
  IpAddr ip;
  const Range* range;
};

// The leases, after removing what only a killed writer leaves: temp files (ours) and empty
// lease files (the reference's create-then-write killed in between, or a power cut). Every
// writer, ours and the reference's, writes only while holding the lock we hold now, so neither
// can be a write in progress.
std::vector<Lease> live_leases(LeaseStore& store) {
  std::vector<Lease> out;
  for (auto& l : store.scan(/*repair=*/true)) {
    if (l.owner.empty()) {
      spdlog::warn("removing empty lease file {}/{}", store.dir(), l.file);
      store.release(l);
      continue;
    }
    out.push_back(std::move(l));
  }
  return out;
}

// The leases a call looks at: every live one (listed), or, when the owner index names every
// lease (the store is sealed, lease_store.h), only the caller's; the taken addresses are then
// asked of the directory one name at a time, and a call costs the same with 1 lease or 10,000.
struct Seen {
  std::vector<Lease> leases;
  bool listed;
};

Seen leases_for(LeaseStore& store, const Attachment& who) {
  if (store.indexed()) return {store.leases_of(who), false};
  return {live_leases(store), true};
}

// Which addresses are taken: the listing's, or the directory's when the call did not list it,
// and those this call has planned.
class Taken {
 public:
  Taken(const LeaseStore& store, const Seen& seen) : store_(store) {
    if (seen.listed) {
      listed_.emplace();
      for (const auto& l : seen.leases) listed_->insert(l.ip);
    }
  }
  bool count(const IpAddr& ip) const {
    return planned_.count(ip) || (listed_ ? listed_->count(ip) > 0 : store_.leased(ip));
  }
  void insert(const IpAddr& ip) { planned_.insert(ip); }

 private:
  const LeaseStore& store_;
  std::optional<std::set<IpAddr>> listed_;
  std::set<IpAddr> planned_;
};

std::string range_prefix(size_t set) {
  return "failed to allocate for range " + std::to_string(set) + ": ";
}

// Requested addresses go to the first set containing them; one per set, the rest stay
// unfulfilled and fail the ADD, as in the reference.
std::vector<std::optional<IpAddr>> place_requested(const Config& config,
                                                   std::vector<IpAddr>& unfulfilled) {
  std::vector<std::optional<IpAddr>> requested(config.range_sets.size());
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
  return requested;
}

// Set `i`'s requested address, when it is neither the gateway nor taken.
Planned plan_requested(const RangeSet& set, size_t i, const IpAddr& ip, const Taken& taken) {
  const Range* r = range_for(set, ip);
  if (ip == r->gw()) {
    throw Error(kErrInvalidConfig,
                range_prefix(i) + "requested ip " + ip.str() + " is subnet's gateway");
  }
  if (taken.count(ip)) {
    throw Error(kErrNotAvailable, range_prefix(i) + "requested IP address " + ip.str() +
                                      " is not available in range set " + set_str(set));
  }
  return {i, ip, r};
}

// Set `i`'s next free address after the last reserved one; the attachment must hold none yet
// (`leases` holds at least all of its).
Planned plan_next_free(const LeaseStore& store, const RangeSet& set, size_t i,
                       const Attachment& who, const std::vector<Lease>& leases,
                       const Taken& taken) {
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
  return {i, c->ip, c->range};
}

// Decides the address for every set without writing anything, so that every error the
// reference can raise is raised before the first write.
std::vector<Planned> plan(const LeaseStore& store, const Config& config, const Attachment& who,
                          const std::vector<Lease>& leases, Taken& taken) {
  std::vector<IpAddr> unfulfilled;
  std::vector<std::optional<IpAddr>> requested = place_requested(config, unfulfilled);
  std::vector<Planned> out;
  for (size_t i = 0; i < config.range_sets.size(); ++i) {
    const RangeSet& set = config.range_sets[i];
    out.push_back(requested[i] ? plan_requested(set, i, *requested[i], taken)
                               : plan_next_free(store, set, i, who, leases, taken));
    taken.insert(out.back().ip);
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
  const Seen seen = leases_for(store, who);
  Taken taken(store, seen);
  std::vector<Planned> planned = plan(store, config, who, seen.leases, taken);

  // Leases first, hints after: a failure before the last lease removes the ones written, and
  // the hints are only touched once every lease is in place.
  Rollback rollback;
  for (const auto& p : planned) {
    if (!store.reserve(p.ip, who)) {
      // Only a writer ignoring the lock can get here.
      throw Error(kErrTryAgainLater, "lease for " + p.ip.str() + " appeared while locked",
                  store.dir());
    }
    rollback.add("release " + p.ip.str(),
                 [&store, l = Lease{p.ip, lease_file_name(p.ip), {}, index_entry_name(p.ip, who)}] {
                   store.release(l);
                 });
  }
  rollback.commit();
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
  store.seal();

  std::vector<IpConfig> out;
  for (const auto& p : planned) {
    out.push_back(IpConfig{Prefix(p.ip, p.range->subnet.len()), p.range->gw(), std::nullopt});
  }
  return out;
}

size_t release(LeaseStore& store, const Attachment& who) {
  const std::vector<Lease> leases = leases_for(store, who).leases;
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
  ErrorList failures;
  for (const Lease* l : mine) {
    failures.attempt("release " + l->ip.str(), [&] { store.release(*l); });
    crash_point("after-release");
  }
  failures.raise("failed to release every lease of " + who.container_id);
  store.seal();
  return mine.size();
}

bool holds(LeaseStore& store, const Attachment& who) {
  if (store.indexed()) return !store.leases_of(who).empty();
  for (const auto& l : store.scan(/*repair=*/false)) {
    if (l.held_by(who) || l.legacy_held_by(who.container_id)) return true;
  }
  return false;
}

size_t collect_garbage(LeaseStore& store, const std::vector<Attachment>& valid) {
  size_t released = 0;
  ErrorList failures;
  for (const auto& l : live_leases(store)) {
    bool keep = false;
    for (const auto& a : valid) keep = keep || l.held_by(a) || l.legacy_held_by(a.container_id);
    if (keep) continue;
    // The owner is a file's bytes: printable(), or dump() throws on one that is not UTF-8.
    spdlog::info("GC: releasing {} (held by {})", l.ip.str(), json(printable(l.owner)).dump());
    failures.attempt("release " + l.ip.str(), [&] {
      store.release(l);
      ++released;
    });
    crash_point("after-release");
  }
  failures.raise("GC failed to release every stale lease");
  store.seal();
  return released;
}

void check_available(const LeaseStore& store, const Config& config) {
  std::vector<IpAddr> leased = store.leased_addresses();
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
    for (const auto& ip : leased) {
      const Range* r = range_for(set, ip);
      if (r && ip != r->gw()) ++used;
    }
    if (used >= capacity) {
      throw Error(kErrNotAvailable, "no IP addresses available in range set: " + set_str(set),
                  "range set " + std::to_string(i) + ": all " + std::to_string(capacity) +
                      " addresses are leased in " + store.dir());
    }
  }
}

}  // namespace cni::hostlocal
