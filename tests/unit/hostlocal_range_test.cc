// host-local range arithmetic: defaults, validation messages and the round-robin order.
#include <doctest/doctest.h>

#include "common/error.h"
#include "plugins/ipam-host-local/lease_store.h"
#include "plugins/ipam-host-local/range.h"

using cni::IpAddr;
using cni::Prefix;
using cni::hostlocal::Range;
using cni::hostlocal::RangeIter;
using cni::hostlocal::RangeSet;

namespace {

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

Range range(const char* subnet, const char* start = nullptr, const char* end = nullptr,
            const char* gw = nullptr) {
  Range r;
  r.subnet = *Prefix::parse(subnet);
  if (start) r.range_start = ip(start);
  if (end) r.range_end = ip(end);
  if (gw) r.gateway = ip(gw);
  return r;
}

Range canon(Range r) {
  r.canonicalize("", "ipam");
  return r;
}

std::string error_of(Range r) {
  try {
    r.canonicalize("", "ipam.ranges[0][0]");
  } catch (const cni::Error& e) {
    CHECK(e.code() == 7);
    return e.msg() + " | " + e.details();
  }
  return "no error";
}

std::vector<std::string> walk(const RangeSet& set, std::optional<IpAddr> last, size_t n = 100) {
  std::vector<std::string> out;
  RangeIter it(set, last);
  while (out.size() < n) {
    auto c = it.next();
    if (!c) break;
    out.push_back(c->ip.str());
  }
  return out;
}

}  // namespace

TEST_CASE("hostlocal range defaults: gateway .1, start .1, end before the IPv4 broadcast") {
  Range r = canon(range("10.1.2.0/24"));
  CHECK(r.gw().str() == "10.1.2.1");
  CHECK(r.start().str() == "10.1.2.1");
  CHECK(r.end().str() == "10.1.2.254");
  CHECK(r.allocatable() == 253);  // .1 is the gateway
  CHECK(r.str() == "10.1.2.1-10.1.2.254");

  Range v6 = canon(range("fd00:1::/120"));
  CHECK(v6.gw().str() == "fd00:1::1");
  CHECK(v6.end().str() == "fd00:1::ff");  // no broadcast in IPv6
  CHECK(v6.allocatable() == 254);

  Range big = canon(range("fd00::/32"));
  CHECK(big.allocatable() == UINT64_MAX);
}

TEST_CASE("hostlocal range explicit window and gateway outside it") {
  Range r = canon(range("10.0.0.0/16", "10.0.5.10", "10.0.5.20", "10.0.0.254"));
  CHECK(r.contains(ip("10.0.5.10")));
  CHECK(r.contains(ip("10.0.5.20")));
  CHECK_FALSE(r.contains(ip("10.0.5.9")));
  CHECK_FALSE(r.contains(ip("10.0.5.21")));
  CHECK_FALSE(r.contains(ip("fd00::1")));
  CHECK(r.allocatable() == 11);
}

TEST_CASE("hostlocal range rejections carry the reference's messages and the key") {
  CHECK(error_of(range("10.0.0.0/31")) ==
        "Network 10.0.0.0/31 too small to allocate from | ipam.ranges[0][0].subnet");
  CHECK(error_of(range("10.0.0.4/32")).starts_with("Network 10.0.0.4/32 too small"));
  CHECK(error_of(range("fd00::/127")).starts_with("Network fd00::/127 too small"));
  CHECK(error_of(range("fd00::/128")).starts_with("Network fd00::/128 too small"));
  CHECK(error_of(range("10.0.0.5/24")) ==
        "Network has host bits set. For a subnet mask of length 24 the network address is "
        "10.0.0.0 | ipam.ranges[0][0].subnet");
  CHECK(error_of(range("10.0.0.0/24", "10.0.1.5")) ==
        "RangeStart 10.0.1.5 not in network 10.0.0.0/24 | ipam.ranges[0][0].rangeStart");
  CHECK(error_of(range("10.0.0.0/24", nullptr, "10.0.1.5")) ==
        "RangeEnd 10.0.1.5 not in network 10.0.0.0/24 | ipam.ranges[0][0].rangeEnd");
  // An end before the start counts as outside, as in the reference.
  CHECK(error_of(range("10.0.0.0/24", "10.0.0.50", "10.0.0.40")).starts_with("RangeEnd"));
  CHECK(error_of(range("10.0.0.0/24", "fd00::1")).starts_with("RangeStart fd00::1"));
  CHECK(error_of(range("10.0.0.0/30")) == "no error");  // .1 gateway, .2 the only lease
}

TEST_CASE("hostlocal range sets: empty, mixed families and overlaps are rejected") {
  auto set_error = [](RangeSet s) -> std::string {
    try {
      cni::hostlocal::canonicalize_set(s, 2, "ipam.ranges[2]");
    } catch (const cni::Error& e) {
      return e.msg() + " | " + e.details();
    }
    return "no error";
  };
  CHECK(set_error({}) == "invalid range set 2: empty range set | ipam.ranges[2]");
  CHECK(set_error({range("10.0.0.0/24"), range("fd00::/64")}) ==
        "invalid range set 2: mixed address families | ipam.ranges[2][1].subnet");
  CHECK(set_error({range("10.0.0.0/16"), range("10.0.1.0/24")}) ==
        "invalid range set 2: subnets 10.0.0.1-10.0.255.254 and 10.0.1.1-10.0.1.254 overlap | "
        "ipam.ranges[2][1]");
  // Same subnet, disjoint windows: allowed, as in the reference.
  CHECK(set_error({range("10.0.0.0/24", "10.0.0.10", "10.0.0.20"),
                   range("10.0.0.0/24", "10.0.0.30", "10.0.0.40")}) == "no error");
  CHECK(set_error({range("10.0.0.0/24", "10.0.0.30", "10.0.0.40"),
                   range("10.0.0.0/24", "10.0.0.10", "10.0.0.30")})
            .ends_with("overlap | ipam.ranges[2][1]"));
}

TEST_CASE("hostlocal iteration: from the start, gateway skipped, one full turn") {
  RangeSet set{canon(range("10.0.0.0/29"))};  // .1 gw, .2-.6
  CHECK(walk(set, std::nullopt) ==
        std::vector<std::string>{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"});
}

TEST_CASE("hostlocal iteration: round-robin after last_reserved_ip, wrapping") {
  RangeSet set{canon(range("10.0.0.0/29"))};
  CHECK(walk(set, ip("10.0.0.4")) ==
        std::vector<std::string>{"10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"});
  // A hint outside the set (ranges changed) starts over at the beginning.
  CHECK(walk(set, ip("10.9.9.9")).front() == "10.0.0.2");
}

TEST_CASE("hostlocal iteration: wraps across the subnets of a set") {
  RangeSet set{canon(range("10.0.0.0/30")), canon(range("10.0.1.0/24", "10.0.1.7", "10.0.1.8")),
               canon(range("10.0.2.0/30", nullptr, nullptr, "10.0.2.2"))};
  CHECK(walk(set, std::nullopt) ==
        std::vector<std::string>{"10.0.0.2", "10.0.1.7", "10.0.1.8", "10.0.2.1"});
  CHECK(walk(set, ip("10.0.1.8")) ==
        std::vector<std::string>{"10.0.2.1", "10.0.0.2", "10.0.1.7", "10.0.1.8"});
}

TEST_CASE("hostlocal iteration: IPv6 is walked lazily") {
  RangeSet set{canon(range("fd00::/64"))};
  CHECK(walk(set, ip("fd00::ffff"), 2) == std::vector<std::string>{"fd00::1:0", "fd00::1:1"});
}

TEST_CASE("hostlocal lease file names print IPv6 as Go does") {
  using cni::hostlocal::lease_file_name;
  CHECK(lease_file_name(ip("10.1.2.3")) == "10.1.2.3");
  CHECK(lease_file_name(ip("fd00::1")) == "fd00::1");
  CHECK(lease_file_name(ip("::1:2")) == "::1:2");  // glibc would say ::0.1.0.2
  CHECK(lease_file_name(ip("fd00:0:0:1::5")) == "fd00:0:0:1::5");
  CHECK(lease_file_name(ip("fd00:0:1:0:0:1:0:0")) == "fd00:0:1::1:0:0");
  CHECK(lease_file_name(ip("fd00:1:2:3:4:5:0:6")) == "fd00:1:2:3:4:5:0:6");
  CHECK(lease_file_name(ip("::")) == "::");
}
