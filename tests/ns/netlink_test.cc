#include "common/netlink.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/if.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "common/error.h"
#include "common/netns.h"
#include "tests/ns/fixture.h"

using cni::NetnsGuard;
using tnst::TestNetns;
namespace nl = cni::nl;

namespace {

nlohmann::json json_of(const TestNetns& ns, const std::string& cmd) {
  tnst::ShResult r = ns.exec(cmd);
  REQUIRE_MESSAGE(r.status == 0, cmd << ": " << r.out);
  return nlohmann::json::parse(r.out);
}

nlohmann::json link_details(const TestNetns& ns, const std::string& name) {
  return json_of(ns, "ip -d -j link show dev " + name).at(0);
}

cni::IpAddr ip(const char* text) { return *cni::IpAddr::parse(text); }
cni::Prefix pfx(const char* text) { return *cni::Prefix::parse(text); }

}  // namespace

TEST_CASE("bridges: create, reuse, reject non-bridges, delete idempotently") {
  TestNetns ns("br");
  NetnsGuard guard(ns.fd());
  nl::Socket sock = nl::Socket::open();

  nl::Link br = nl::ensure_bridge(
      sock, {.name = "tbr0", .mtu = 1400, .mac = cni::Mac::parse("02:42:ac:11:00:01")});
  CHECK(br.kind == "bridge");
  CHECK(br.mtu == 1400);
  CHECK(cni::mac_text(br.mac) == "02:42:ac:11:00:01");
  CHECK(link_details(ns, "tbr0")["linkinfo"]["info_kind"] == "bridge");

  // A second ADD finds the bridge the first one made.
  CHECK(nl::ensure_bridge(sock, {.name = "tbr0", .mtu = 1400}).ifindex == br.ifindex);

  REQUIRE(ns.exec("ip link add tdummy0 type veth peer name tdummy1").status == 0);
  try {
    nl::ensure_bridge(sock, {.name = "tdummy0"});
    FAIL("a veth was accepted as a bridge");
  } catch (const cni::Error& e) {
    CHECK(e.details().find("tdummy0") != std::string::npos);
  }

  CHECK(nl::get_link(sock, "tbr0").has_value());
  CHECK(nl::get_link(sock, br.ifindex)->name == "tbr0");
  CHECK(nl::delete_link(sock, "tbr0"));
  CHECK_FALSE(nl::delete_link(sock, "tbr0"));
  CHECK_FALSE(nl::get_link(sock, "tbr0").has_value());
  CHECK_FALSE(nl::get_link(sock, br.ifindex).has_value());
  CHECK_THROWS_AS(nl::require_link(sock, "tbr0"), cni::Error);
}

TEST_CASE("bridges: concurrent creation of the same bridge is harmless") {
  TestNetns ns("brc");
  constexpr int kThreads = 4;
  std::vector<int> ifindex(kThreads, 0);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      try {
        NetnsGuard guard(ns.fd());  // setns is per thread
        nl::Socket sock = nl::Socket::open();
        ifindex[static_cast<size_t>(i)] = nl::ensure_bridge(sock, {.name = "tbrc"}).ifindex;
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(i)] = e.what();
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (int i = 0; i < kThreads; ++i) {
    CHECK(errors[static_cast<size_t>(i)] == "");
    CHECK(ifindex[static_cast<size_t>(i)] == ifindex[0]);
  }
  CHECK(ifindex[0] > 0);
}

TEST_CASE("veth: peer created inside the other netns, port flags, VLANs, idempotent delete") {
  TestNetns host("vh");
  TestNetns cont("vc");
  NetnsGuard guard(host.fd());
  nl::Socket sock = nl::Socket::open();

  nl::Link br = nl::ensure_bridge(sock, {.name = "tbr1"});
  nl::Link veth = nl::create_veth(sock,
                                  {.name = "tveth0",
                                   .peer_name = "eth0",
                                   .mtu = 1450,
                                   .peer_mac = cni::Mac::parse("0a:58:0a:01:00:02")},
                                  cont.fd());
  CHECK(veth.kind == "veth");
  CHECK(veth.mtu == 1450);
  CHECK_FALSE(nl::get_link(sock, "eth0").has_value());  // not on this side

  // Creating the same pair again fails: names are taken.
  CHECK_THROWS_AS(nl::create_veth(sock, {.name = "tveth0", .peer_name = "eth1"}, cont.fd()),
                  cni::Error);

  nl::Link peer = cni::in_netns(cont.fd(), [&] {
    nl::Socket csock = nl::Socket::open();  // sockets belong to the netns they are opened in
    return nl::require_link(csock, "eth0");
  });
  CHECK(cni::mac_text(peer.mac) == "0a:58:0a:01:00:02");
  CHECK(peer.mtu == 1450);
  CHECK(peer.peer_ifindex == veth.ifindex);
  CHECK(veth.peer_ifindex == peer.ifindex);

  nl::set_master(sock, veth.ifindex, br.ifindex);
  nl::set_link_up(sock, veth.ifindex);
  nl::set_link_up(sock, br.ifindex);
  nl::set_promisc(sock, br.ifindex, true);
  veth = nl::require_link(sock, "tveth0");
  CHECK(veth.master == br.ifindex);
  CHECK(veth.up());
  CHECK((nl::require_link(sock, "tbr1").flags & IFF_PROMISC) != 0);
  nl::set_promisc(sock, br.ifindex, false);
  CHECK((nl::require_link(sock, "tbr1").flags & IFF_PROMISC) == 0);
  nl::set_mtu(sock, veth.ifindex, 1400);
  CHECK(nl::require_link(sock, "tveth0").mtu == 1400);

  nl::set_bridge_port(sock, veth.ifindex, {.hairpin = true, .isolated = true, .learning = false});
  nl::BridgePortFlags f = nl::get_bridge_port(sock, veth.ifindex);
  CHECK(f.hairpin == true);
  CHECK(f.isolated == true);
  CHECK(f.learning == false);
  nlohmann::json slave = link_details(host, "tveth0")["linkinfo"]["info_slave_data"];
  CHECK(slave["hairpin"] == true);
  CHECK(slave["isolated"] == true);
  CHECK(slave["learning"] == false);
  nl::set_bridge_port(sock, veth.ifindex, {.hairpin = false});
  f = nl::get_bridge_port(sock, veth.ifindex);
  CHECK(f.hairpin == false);
  CHECK(f.isolated == true);                                           // untouched
  CHECK_THROWS_AS(nl::get_bridge_port(sock, br.ifindex), cni::Error);  // not a port

  CHECK(nl::delete_link(sock, "tveth0"));
  CHECK_FALSE(nl::delete_link(sock, "tveth0"));
  CHECK(cont.exec("ip link show eth0").status != 0);  // the peer went with it
  CHECK(nl::delete_link(sock, "tbr1"));
}

TEST_CASE("veth: delete_link_detached returns once the pair is unregistered") {
  TestNetns host("dh");
  TestNetns cont("dc");
  NetnsGuard guard(host.fd());
  nl::Socket sock = nl::Socket::open();
  nl::Link br = nl::ensure_bridge(sock, {.name = "tbr2"});
  nl::Link veth = nl::create_veth(sock, {.name = "tveth2", .peer_name = "eth0"}, cont.fd());
  nl::set_master(sock, veth.ifindex, br.ifindex);
  nl::set_link_up(sock, veth.ifindex);
  // A descriptor for the grandchild to hold until the kernel has answered it: its last release.
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  struct stat st {};
  REQUIRE(::fstat(p[1], &st) == 0);
  const std::string pipe = "pipe:[" + std::to_string(st.st_ino) + "]";
  const int keep[] = {p[1]};
  const nl::Link peer = cni::in_netns(cont.fd(), [&] {
    nl::Socket csock = nl::Socket::open();
    return nl::require_link(csock, "eth0");
  });
  const bool deleted = cni::in_netns(
      cont.fd(), [&] { return nl::delete_link_detached(peer.ifindex, peer.name, keep); });
  ::close(p[1]);
  CHECK(deleted);
  // Unregistered when it returns: both ends gone, on both sides.
  CHECK_FALSE(nl::get_link(sock, "tveth2").has_value());
  CHECK(cont.exec("ip link show eth0").status != 0);
  CHECK(tnst::zombie_children() == 0);
  // The grandchild lets the kept descriptor go once the kernel has answered: EOF, soon.
  pollfd eof{p[0], POLLIN, 0};
  REQUIRE(::poll(&eof, 1, 10'000) == 1);
  char c;
  CHECK(::read(p[0], &c, 1) == 0);
  ::close(p[0]);
  bool held = true;
  for (int i = 0; i < 500 && held; ++i) {
    held = tnst::fd_target_held(pipe);
    if (held) ::usleep(10'000);
  }
  CHECK_FALSE(held);
  CHECK(tnst::zombie_children() == 0);
  // The name is free at once for a new pair, and a link that is not there is no error.
  nl::Link again = nl::create_veth(sock, {.name = "tveth2", .peer_name = "eth0"}, cont.fd());
  CHECK(nl::delete_link_detached(again.ifindex, again.name, {}));
  CHECK_FALSE(nl::delete_link_detached(again.ifindex, again.name, {}));
  CHECK_FALSE(nl::get_link(sock, "tveth2").has_value());
  CHECK(nl::delete_link(sock, "tbr2"));
}

TEST_CASE("addresses: add with NODAD, tolerate EEXIST, list per family, delete") {
  TestNetns ns("addr");
  NetnsGuard guard(ns.fd());
  nl::Socket sock = nl::Socket::open();
  nl::Link br = nl::ensure_bridge(sock, {.name = "tbr2"});
  nl::set_link_up(sock, br.ifindex);

  nl::add_address(sock, br.ifindex, pfx("10.88.0.1/16"));
  nl::add_address(sock, br.ifindex, pfx("fd00:88::1/64"), {.nodad = true});
  CHECK_THROWS_AS(nl::add_address(sock, br.ifindex, pfx("10.88.0.1/16")), cni::Error);
  nl::add_address(sock, br.ifindex, pfx("10.88.0.1/16"), {.tolerate_exists = true});

  std::vector<nl::Address> v4 = nl::list_addresses(sock, br.ifindex, AF_INET);
  REQUIRE(v4.size() == 1);
  CHECK(v4[0].cidr().str() == "10.88.0.1/16");
  std::vector<nl::Address> v6 = nl::list_addresses(sock, br.ifindex, AF_INET6);
  bool found = false;
  for (const nl::Address& a : v6) {
    if (a.cidr().str() == "fd00:88::1/64") {
      found = true;
      CHECK((a.flags & IFA_F_NODAD) != 0);
    }
  }
  CHECK(found);
  CHECK(nl::list_addresses(sock, br.ifindex).size() >= 2);

  nlohmann::json info = json_of(ns, "ip -j -4 addr show dev tbr2").at(0)["addr_info"].at(0);
  CHECK(info["local"] == "10.88.0.1");
  CHECK(info["broadcast"] == "10.88.255.255");

  CHECK(nl::delete_address(sock, br.ifindex, pfx("10.88.0.1/16")));
  CHECK_FALSE(nl::delete_address(sock, br.ifindex, pfx("10.88.0.1/16")));
  CHECK(nl::list_addresses(sock, br.ifindex, AF_INET).empty());
  // Text that is no address stops at the edge, where it is parsed; nl takes only a Prefix.
  CHECK_FALSE(cni::Prefix::parse("not-an-ip/24"));
}

TEST_CASE("routes: add, replace, list, delete with mtu/advmss/metric/table") {
  TestNetns ns("rt");
  NetnsGuard guard(ns.fd());
  nl::Socket sock = nl::Socket::open();
  nl::Link br = nl::ensure_bridge(sock, {.name = "tbr3"});
  nl::set_link_up(sock, br.ifindex);
  nl::add_address(sock, br.ifindex, pfx("10.77.0.1/24"));
  nl::add_address(sock, br.ifindex, pfx("fd00:77::1/64"), {.nodad = true});

  nl::Route r;
  r.dst = pfx("10.99.0.0/16");
  r.gateway = ip("10.77.0.254");
  r.oif = br.ifindex;
  r.mtu = 1300;
  r.advmss = 1260;
  r.priority = 50;
  nl::add_route(sock, r);
  CHECK_THROWS_AS(nl::add_route(sock, r), cni::Error);
  nl::add_route(sock, r, nl::RouteMode::kAddOrExisting);

  nl::Route def;
  def.dst = pfx("0.0.0.0/0");
  def.gateway = ip("10.77.0.254");
  def.table = 100;
  nl::add_route(sock, def);

  nl::Route v6;
  v6.family = AF_INET6;
  v6.dst = pfx("fd00:99::/48");
  v6.oif = br.ifindex;
  nl::add_route(sock, v6);

  std::vector<nl::Route> routes = nl::list_routes(sock, AF_INET, br.ifindex);
  const nl::Route* got = nullptr;
  for (const nl::Route& x : routes) {
    if (x.dst.str() == "10.99.0.0/16") {
      got = &x;
    }
  }
  REQUIRE(got != nullptr);
  CHECK(got->gateway == ip("10.77.0.254"));
  CHECK(got->mtu == 1300);
  CHECK(got->advmss == 1260);
  CHECK(got->priority == 50);
  CHECK(got->scope == RT_SCOPE_UNIVERSE);

  std::vector<nl::Route> t100 = nl::list_routes(sock, AF_INET, 0, 100);
  REQUIRE(t100.size() == 1);
  CHECK(t100[0].dst.str() == "0.0.0.0/0");
  CHECK(t100[0].gateway == ip("10.77.0.254"));

  bool v6found = false;
  for (const nl::Route& x : nl::list_routes(sock, AF_INET6, br.ifindex)) {
    v6found = v6found || (x.dst.str() == "fd00:99::/48" && x.scope == RT_SCOPE_UNIVERSE);
  }
  CHECK(v6found);

  nlohmann::json ipr = json_of(ns, "ip -j route show 10.99.0.0/16").at(0);
  CHECK(ipr["gateway"] == "10.77.0.254");
  CHECK(ipr["metric"] == 50);
  CHECK(json_of(ns, "ip -j -d route show 10.99.0.0/16").at(0)["metrics"].dump().find("1300") !=
        std::string::npos);

  r.mtu = 1200;
  nl::add_route(sock, r, nl::RouteMode::kReplace);
  for (const nl::Route& x : nl::list_routes(sock, AF_INET, br.ifindex)) {
    if (x.dst.str() == "10.99.0.0/16") {
      CHECK(x.mtu == 1200);
    }
  }

  CHECK(nl::delete_route(sock, r));
  CHECK_FALSE(nl::delete_route(sock, r));
  CHECK(nl::delete_route(sock, def));
  CHECK(nl::list_routes(sock, AF_INET, 0, 100).empty());
}

TEST_CASE("sysctl: written in the current netns only") {
  TestNetns ns("sysctl");
  const std::optional<std::string> host_before = nl::read_sysctl("net/ipv4/ip_forward");
  REQUIRE(host_before.has_value());
  {
    NetnsGuard guard(ns.fd());
    nl::write_sysctl("net/ipv4/ip_forward", "1");
    CHECK(nl::read_sysctl("net.ipv4.ip_forward") == "1");
    nl::write_sysctl(nl::iface_sysctl("ipv6", "lo", "disable_ipv6"), "1");
    CHECK(nl::read_sysctl(nl::iface_sysctl("ipv6", "lo", "disable_ipv6")) == "1");
    CHECK_FALSE(nl::read_sysctl(nl::iface_sysctl("ipv4", "nosuchif0", "arp_notify")).has_value());
    CHECK_THROWS_AS(nl::write_sysctl(nl::iface_sysctl("ipv4", "nosuchif0", "arp_notify"), "1"),
                    cni::Error);
  }
  CHECK(nl::read_sysctl("net/ipv4/ip_forward") == host_before);
  CHECK(ns.exec("sysctl -n net.ipv4.ip_forward").out == "1\n");
}

TEST_CASE("bridge VLANs: vlan_filtering, PVID/untagged and trunk ranges on a port") {
  TestNetns ns("vlan");
  // Some kernels (this CI's among them) are built without CONFIG_BRIDGE_VLAN_FILTERING; then
  // the calls must fail with a clear error rather than silently do nothing.
  const bool supported = ns.exec("ip link add tvlchk type bridge vlan_filtering 1").status == 0;
  NetnsGuard guard(ns.fd());
  nl::Socket sock = nl::Socket::open();
  if (!supported) {
    MESSAGE("kernel without bridge VLAN filtering: checking the error path only");
    try {
      nl::ensure_bridge(sock, {.name = "tbrv", .vlan_filtering = true});
      FAIL("vlan_filtering accepted by a kernel that lacks it");
    } catch (const cni::Error& e) {
      CHECK(e.details().find("CONFIG_BRIDGE_VLAN_FILTERING") != std::string::npos);
    }
    CHECK_FALSE(nl::get_link(sock, "tbrv").has_value());
    nl::Link br = nl::ensure_bridge(sock, {.name = "tbrv"});
    nl::Link veth = nl::create_veth(sock, {.name = "tvv0", .peer_name = "tvv1"}, ns.fd());
    nl::set_master(sock, veth.ifindex, br.ifindex);
    CHECK_THROWS_AS(nl::bridge_vlan_add(sock, veth.ifindex, {{.vid = 10, .pvid = true}}),
                    cni::Error);
    return;
  }
  nl::Link br = nl::ensure_bridge(sock, {.name = "tbrv", .vlan_filtering = true});
  CHECK(link_details(ns, "tbrv")["linkinfo"]["info_data"]["vlan_filtering"] == 1);
  nl::set_bridge_vlan_filtering(sock, br.ifindex, false);
  CHECK(link_details(ns, "tbrv")["linkinfo"]["info_data"]["vlan_filtering"] == 0);
  nl::set_bridge_vlan_filtering(sock, br.ifindex, true);
  nl::Link veth = nl::create_veth(sock, {.name = "tveth0", .peer_name = "tvv1"}, ns.fd());
  nl::set_master(sock, veth.ifindex, br.ifindex);
  TestNetns& host = ns;
  nl::bridge_vlan_add(sock, veth.ifindex,
                      {{.vid = 10, .pvid = true, .untagged = true}, {.vid = 100, .vid_end = 110}});
  nl::bridge_vlan_del(sock, veth.ifindex, {{.vid = 1}});
  nlohmann::json vlans = json_of(host, "bridge -j vlan show dev tveth0");
  REQUIRE(vlans.size() == 1);
  const nlohmann::json& list = vlans[0]["vlans"];
  REQUIRE(list.size() == 2);
  CHECK(list[0]["vlan"] == 10);
  CHECK(list[0]["flags"].dump() == R"(["PVID","Egress Untagged"])");
  CHECK(list[1]["vlan"] == 100);
  CHECK(list[1]["vlanEnd"] == 110);
}
