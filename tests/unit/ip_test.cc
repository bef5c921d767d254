#include "common/ip.h"

#include <doctest/doctest.h>

using cni::IpAddr;
using cni::Prefix;

TEST_CASE("ip: parse and format") {
  CHECK(IpAddr::parse("10.1.2.3")->str() == "10.1.2.3");
  CHECK(IpAddr::parse("fd00:0:0::1")->str() == "fd00::1");
  CHECK(IpAddr::parse("::ffff:1.2.3.4")->family() == IpAddr::Family::kV6);
  for (const char* bad :
       {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "fd00:::1", "x", " 1.2.3.4", "1.2.3.4/24"}) {
    CAPTURE(bad);
    CHECK_FALSE(IpAddr::parse(bad));
  }
  CHECK(Prefix::parse("10.1.0.5/16")->str() == "10.1.0.5/16");
  CHECK(Prefix::parse("10.1.0.5/16")->network().str() == "10.1.0.0/16");
  CHECK(Prefix::parse("fd00::5/64")->network().str() == "fd00::/64");
  CHECK_FALSE(Prefix::parse("10.1.0.5"));
  CHECK(Prefix::parse("10.1.0.5", true)->str() == "10.1.0.5/32");
  CHECK(Prefix::parse("fd00::5", true)->len() == 128);
  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "fd00::/129", "x/8",
                          "10.0.0.0/1a", "10.0.0.0/0008"}) {
    CAPTURE(bad);
    CHECK_FALSE(Prefix::parse(bad));
  }
}

TEST_CASE("ip: IPv4-mapped addresses unmap to IPv4, as Go parses them") {
  CHECK(IpAddr::parse("::ffff:10.0.0.1")->unmapped() == *IpAddr::parse("10.0.0.1"));
  CHECK(IpAddr::parse("::10.0.0.1")->unmapped().family() == IpAddr::Family::kV6);
  CHECK(IpAddr::parse("fd00::1")->unmapped() == *IpAddr::parse("fd00::1"));
  CHECK(IpAddr::parse("10.0.0.1")->unmapped() == *IpAddr::parse("10.0.0.1"));
}

TEST_CASE("ip: next and prev wrap and carry") {
  CHECK(IpAddr::parse("10.0.0.255")->next().str() == "10.0.1.0");
  CHECK(IpAddr::parse("10.0.1.0")->prev().str() == "10.0.0.255");
  CHECK(IpAddr::parse("255.255.255.255")->next().str() == "0.0.0.0");
  CHECK(IpAddr::parse("0.0.0.0")->prev().str() == "255.255.255.255");
  CHECK(IpAddr::parse("fd00::ffff")->next().str() == "fd00::1:0");
  CHECK(IpAddr::parse("fd00::1:0")->prev().str() == "fd00::ffff");
  CHECK(IpAddr::v4(0x0a000001).str() == "10.0.0.1");
}

TEST_CASE("ip: containment, overlap, last") {
  auto p = *Prefix::parse("10.1.0.0/16");
  CHECK(p.contains(*IpAddr::parse("10.1.255.255")));
  CHECK_FALSE(p.contains(*IpAddr::parse("10.2.0.0")));
  CHECK_FALSE(p.contains(*IpAddr::parse("fd00::1")));
  CHECK(p.last().str() == "10.1.255.255");
  CHECK(Prefix::parse("10.1.2.0/23")->last().str() == "10.1.3.255");
  CHECK(Prefix::parse("fd00::/120")->last().str() == "fd00::ff");
  CHECK(p.overlaps(*Prefix::parse("10.1.5.0/24")));
  CHECK(Prefix::parse("10.1.5.0/24")->overlaps(p));
  CHECK_FALSE(p.overlaps(*Prefix::parse("10.2.0.0/16")));
  CHECK_FALSE(p.overlaps(*Prefix::parse("fd00::/8")));
  CHECK(Prefix::parse("0.0.0.0/0")->contains(*IpAddr::parse("1.2.3.4")));
  CHECK(*IpAddr::parse("10.0.0.2") < *IpAddr::parse("10.0.0.10"));
}
