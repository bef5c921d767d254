// common/rtnl.h against a real kernel: the filtered address dump, RTM_GETNETCONF, IPv4 devconf
// over rtnetlink, IFLA_INET6_ADDR_GEN_MODE, and SysctlDir, each checked against ip(8)/procfs.
#include "common/rtnl.h"

#include <doctest/doctest.h>
#include <linux/if_link.h>
#include <linux/ip.h>

#include "common/error.h"
#include "common/netns.h"
#include "tests/ns/fixture.h"

using cni::NetnsGuard;
using tnst::TestNetns;
namespace nl = cni::nl;

TEST_CASE("rtnl: the address dump answers for one interface and family only") {
  TestNetns ns("rtaddr");
  // One command per exec: ns.exec runs its command line in the namespace, not a shell script.
  for (const char* cmd :
       {"ip link add ta0 type veth peer name ta0p", "ip link add ta1 type veth peer name ta1p",
        "ip addr add 10.70.0.1/24 dev ta0", "ip addr add 10.71.0.1/16 dev ta1",
        "ip addr add fd70::1/64 dev ta0 nodad", "ip link set ta0 up", "ip link set ta1 up"}) {
    REQUIRE_MESSAGE(ns.exec(cmd).status == 0, cmd);
  }
  NetnsGuard guard(ns.fd());
  nl::Socket sock = nl::Socket::open();
  const int ta0 = nl::require_link(sock, "ta0").ifindex;
  const int ta1 = nl::require_link(sock, "ta1").ifindex;

  auto v4 = nl::dump_addresses(sock, ta0, AF_INET);
  REQUIRE(v4.size() == 1);
  CHECK(v4[0].cidr().str() == "10.70.0.1/24");
  CHECK(v4[0].family == AF_INET);
  auto v6 = nl::dump_addresses(sock, ta0, AF_INET6);
  std::vector<std::string> v6_cidrs;
  for (const auto& a : v6) v6_cidrs.push_back(a.cidr().str());
  CHECK(std::count(v6_cidrs.begin(), v6_cidrs.end(), "fd70::1/64") == 1);
  for (const auto& a : v6) CHECK(a.family == AF_INET6);
  CHECK(nl::dump_addresses(sock, ta1, AF_INET).at(0).cidr().str() == "10.71.0.1/16");
  CHECK(nl::dump_addresses(sock, ta0, AF_UNSPEC).size() == v4.size() + v6.size());
  for (const auto& a : nl::dump_addresses(sock, ta0, AF_UNSPEC)) CHECK(a.ifindex == ta0);
  size_t on_ta1 = 0;
  for (const auto& a : nl::dump_addresses(sock, 0, AF_INET)) on_ta1 += a.ifindex == ta1;
  CHECK(on_ta1 == 1);
  // The socket still serves libnl's own (non-strict) requests afterwards.
  CHECK(nl::list_addresses(sock, ta1, AF_INET).size() == 1);
  CHECK(nl::get_link(sock, "ta1").has_value());
  CHECK(nl::list_routes(sock, AF_INET, ta1).size() == 1);
}

TEST_CASE("rtnl: forwarding, IPv4 devconf and addr_gen_mode, as procfs sees them") {
  TestNetns ns("rtconf");
  REQUIRE(ns.exec("ip link add tc0 type veth peer name tc0p").status == 0);
  NetnsGuard guard(ns.fd());
  nl::Socket sock = nl::Socket::open();
  const int tc0 = nl::require_link(sock, "tc0").ifindex;

  // A new namespace may start with either value (net.core.devconf_inherit_init_net).
  for (const char* v : {"0", "1", "0"}) {
    nl::write_sysctl("net/ipv4/ip_forward", v);
    CHECK(nl::get_forwarding(sock, AF_INET) == (v[0] == '1'));
    nl::write_sysctl("net/ipv6/conf/all/forwarding", v);
    CHECK(nl::get_forwarding(sock, AF_INET6) == (v[0] == '1'));
  }

  CHECK(nl::get_ipv4_devconf(sock, tc0, IPV4_DEVCONF_ROUTE_LOCALNET) == 0u);
  nl::set_ipv4_devconf(sock, tc0, IPV4_DEVCONF_ROUTE_LOCALNET, 1);
  CHECK(nl::read_sysctl(nl::iface_sysctl("ipv4", "tc0", "route_localnet")) == "1");
  CHECK(nl::get_ipv4_devconf(sock, tc0, IPV4_DEVCONF_ROUTE_LOCALNET) == 1u);
  nl::set_ipv4_devconf(sock, tc0, IPV4_DEVCONF_ARP_NOTIFY, 1);
  CHECK(nl::read_sysctl(nl::iface_sysctl("ipv4", "tc0", "arp_notify")) == "1");
  CHECK_THROWS_AS(nl::set_ipv4_devconf(sock, 999999, IPV4_DEVCONF_ARP_NOTIFY, 1), cni::Error);

  nl::set_ipv6_addr_gen_mode(sock, tc0, IN6_ADDR_GEN_MODE_NONE);
  CHECK(nl::read_sysctl(nl::iface_sysctl("ipv6", "tc0", "addr_gen_mode")) == "1");
  nl::set_link_up(sock, tc0);
  nl::set_link_up(sock, nl::require_link(sock, "tc0p").ifindex);  // carrier on both ends
  CHECK(nl::dump_addresses(sock, tc0, AF_INET6).empty());         // no fe80:: generated
  // The peer, left at the default mode, got its link-local address at the same moment.
  auto peer = nl::dump_addresses(sock, nl::require_link(sock, "tc0p").ifindex, AF_INET6);
  REQUIRE(peer.size() == 1);
  CHECK(peer[0].ip.str().rfind("fe80:", 0) == 0);
}

TEST_CASE("rtnl: SysctlDir reads and writes below one directory of the current netns") {
  TestNetns ns("rtsys");
  NetnsGuard guard(ns.fd());
  nl::SysctlDir conf("net/ipv6/conf");
  REQUIRE(conf.exists());
  conf.write("lo/disable_ipv6", "1");
  CHECK(conf.read("lo/disable_ipv6") == "1");
  CHECK(nl::read_sysctl(nl::iface_sysctl("ipv6", "lo", "disable_ipv6")) == "1");
  CHECK_FALSE(conf.read("nosuchif0/accept_dad").has_value());
  CHECK_THROWS_AS(conf.write("nosuchif0/accept_dad", "0"), cni::Error);
  nl::SysctlDir missing("net/nosuchdir");
  CHECK_FALSE(missing.exists());
  CHECK_FALSE(missing.read("x").has_value());
  CHECK_THROWS_AS(missing.write("x", "1"), cni::Error);
}
