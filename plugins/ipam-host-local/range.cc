#include "plugins/ipam-host-local/range.h"

#include <algorithm>

#include "common/error.h"

namespace cni::hostlocal {

namespace {

[[noreturn]] void invalid(const std::string& msg, const std::string& key) {
  throw Error(kErrInvalidConfig, msg, key);
}

// Distance b - a for a <= b of one family, saturated to 64 bits.
uint64_t distance(const IpAddr& a, const IpAddr& b) {
  unsigned __int128 x = 0;
  unsigned __int128 y = 0;
  for (int i = 0; i < a.byte_len(); ++i) {
    x = (x << 8) | a.bytes()[i];
    y = (y << 8) | b.bytes()[i];
  }
  // IPv6 values above 2^128-1 cannot occur; only the top bits can make the distance large.
  unsigned __int128 d = y - x;
  return d > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(d);
}

}  // namespace

void Range::canonicalize(const std::string& prefix, const std::string& where) {
  const std::string subnet_key = where + ".subnet";
  const IpAddr& net_ip = subnet.addr();
  // Nothing to hand out in a /31 or /32 (/127, /128): the reference refuses them.
  if (subnet.len() > net_ip.bits() - 2) {
    invalid(prefix + "Network " + subnet.str() + " too small to allocate from", subnet_key);
  }
  Prefix network = subnet.network();
  if (network.addr() != net_ip) {
    invalid(prefix + "Network has host bits set. For a subnet mask of length " +
                std::to_string(subnet.len()) + " the network address is " + network.addr().str(),
            subnet_key);
  }
  if (!gateway) gateway = net_ip.next();
  // The default start is network+1, i.e. the default gateway: the iterator skips the gateway,
  // so the first lease is .2.
  if (range_start) {
    if (!subnet.contains(*range_start)) {
      invalid(prefix + "RangeStart " + range_start->str() + " not in network " + subnet.str(),
              where + ".rangeStart");
    }
  } else {
    range_start = net_ip.next();
  }
  if (range_end) {
    // Checked against the already-set start, as the reference does: an end before the start is
    // "not in network" too.
    if (!contains(*range_end)) {
      invalid(prefix + "RangeEnd " + range_end->str() + " not in network " + subnet.str(),
              where + ".rangeEnd");
    }
  } else {
    // The last address, except that IPv4 keeps its broadcast address out.
    range_end = net_ip.is_v4() ? subnet.last().prev() : subnet.last();
  }
}

bool Range::contains(const IpAddr& ip) const {
  if (!subnet.contains(ip)) return false;
  if (range_start && ip < *range_start) return false;
  if (range_end && ip > *range_end) return false;
  return true;
}

bool Range::overlaps(const Range& other) const {
  if (start().family() != other.start().family()) return false;
  return contains(other.start()) || contains(other.end()) || other.contains(start()) ||
         other.contains(end());
}

uint64_t Range::allocatable() const {
  uint64_t n = distance(start(), end());
  if (n == UINT64_MAX) return n;  // saturated: "more than enough"
  return contains(gw()) ? n : n + 1;
}

std::string Range::str() const { return start().str() + "-" + end().str(); }

void canonicalize_set(RangeSet& set, size_t index, const std::string& where) {
  const std::string prefix = "invalid range set " + std::to_string(index) + ": ";
  if (set.empty()) invalid(prefix + "empty range set", where);
  for (size_t i = 0; i < set.size(); ++i) {
    const std::string range_where = where + "[" + std::to_string(i) + "]";
    set[i].canonicalize(prefix, range_where);
    if (set[i].start().family() != set[0].start().family()) {
      invalid(prefix + "mixed address families", range_where + ".subnet");
    }
  }
  for (size_t i = 0; i < set.size(); ++i) {
    for (size_t j = i + 1; j < set.size(); ++j) {
      if (set[i].overlaps(set[j])) {
        invalid(prefix + "subnets " + set[i].str() + " and " + set[j].str() + " overlap",
                where + "[" + std::to_string(j) + "]");
      }
    }
  }
}

bool sets_overlap(const RangeSet& a, const RangeSet& b) {
  for (const auto& r : a) {
    for (const auto& r1 : b) {
      if (r.overlaps(r1)) return true;
    }
  }
  return false;
}

const Range* range_for(const RangeSet& set, const IpAddr& ip) {
  for (const auto& r : set) {
    if (r.contains(ip)) return &r;
  }
  return nullptr;
}

std::string set_str(const RangeSet& set) {
  std::string out;
  for (const auto& r : set) {
    if (!out.empty()) out += ',';
    out += r.str();
  }
  return out;
}

RangeIter::RangeIter(const RangeSet& set, const std::optional<IpAddr>& last_reserved) : set_(set) {
  // A stale hint (the ranges changed since it was written) only costs round-robin once.
  if (last_reserved) {
    for (size_t i = 0; i < set_.size(); ++i) {
      if (set_[i].contains(*last_reserved)) {
        idx_ = i;
        cur_ = *last_reserved;  // the first next() returns the address after it
        return;
      }
    }
  }
  start_ip_ = set_[0].start();
}

std::optional<RangeIter::Candidate> RangeIter::next() {
  for (;;) {
    const Range* r = &set_[idx_];
    if (!cur_) {
      cur_ = r->start();
      start_ip_ = cur_;
      if (*cur_ == r->gw()) continue;
      return Candidate{*cur_, r};
    }
    if (*cur_ == r->end()) {
      idx_ = (idx_ + 1) % set_.size();
      r = &set_[idx_];
      cur_ = r->start();
    } else {
      cur_ = cur_->next();
    }
    if (!start_ip_) {
      start_ip_ = cur_;
    } else if (*cur_ == *start_ip_) {
      return std::nullopt;  // one full turn: every address was offered
    }
    if (*cur_ == r->gw()) continue;
    return Candidate{*cur_, r};
  }
}

}  // namespace cni::hostlocal
