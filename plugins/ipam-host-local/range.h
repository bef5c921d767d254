#pragma once
// Address ranges and range sets, with the reference host-local's semantics: a Range is a subnet
// with an inclusive [rangeStart, rangeEnd] window and a gateway; a RangeSet is a pool of
// non-overlapping ranges of one family from which one address is handed out per ADD.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"

namespace cni::hostlocal {

struct Range {
  Prefix subnet;  // as written, e.g. "10.1.0.0/16"
  std::optional<IpAddr> range_start;
  std::optional<IpAddr> range_end;
  std::optional<IpAddr> gateway;

  // Fills in the defaults (gateway = network+1, start = network+1, end = last address, minus
  // the broadcast for IPv4) and validates. Throws Error code 7: msg is `prefix` plus the
  // reference's message, details name the key under `where` ("ipam.ranges[0][1]").
  void canonicalize(const std::string& prefix, const std::string& where);

  // Valid only after canonicalize(): the fields below are then always set.
  const IpAddr& start() const { return *range_start; }
  const IpAddr& end() const { return *range_end; }
  const IpAddr& gw() const { return *gateway; }
  // True when `ip` lies in the subnet and in [start, end].
  bool contains(const IpAddr& ip) const;
  bool overlaps(const Range& other) const;
  // Number of addresses ADD can hand out (the window minus the gateway), saturated at 2^64-1.
  uint64_t allocatable() const;
  std::string str() const;  // "start-end", as the reference prints it
};

using RangeSet = std::vector<Range>;

// Canonicalizes every range of set number `index` and checks the set: not empty, one family,
// no two ranges overlapping. Errors as Range::canonicalize, prefixed "invalid range set N: ".
void canonicalize_set(RangeSet& set, size_t index, const std::string& where);
bool sets_overlap(const RangeSet& a, const RangeSet& b);

// The range in `set` containing `ip`, or null.
const Range* range_for(const RangeSet& set, const IpAddr& ip);
std::string set_str(const RangeSet& set);  // "start-end,start-end"

// The reference's round-robin order over a set: starts after `last_reserved` when the set
// contains it (else at the first range's start), walks each range to its end, wraps to the next
// range, skips each range's gateway and stops after one full turn. Lazy: a /64 is never
// enumerated, only walked until a free address turns up.
class RangeIter {
 public:
  RangeIter(const RangeSet& set, const std::optional<IpAddr>& last_reserved);
  struct Candidate {
    IpAddr ip;
    const Range* range;
  };
  std::optional<Candidate> next();

 private:
  const RangeSet& set_;
  size_t idx_ = 0;
  std::optional<IpAddr> cur_;
  std::optional<IpAddr> start_ip_;
};

}  // namespace cni::hostlocal
