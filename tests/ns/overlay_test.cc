// The overlay's kernel objects against a real kernel: VXLAN devices, permanent neighbours, FDB
// entries, onlink routes and the reconcile that keeps them equal to the peer set, with traffic
// between two "hosts" (namespaces joined by a veth underlay).
#include "common/overlay.h"

#include <doctest/doctest.h>
#include <linux/neighbour.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/netlink.h"
#include "common/netns.h"
#include "tests/ns/fixture.h"

using cni::IpAddr;
using cni::NetnsGuard;
using cni::Prefix;
using tnst::TestNetns;
namespace nl = cni::nl;
namespace ov = cni::overlay;

namespace {

nlohmann::json json_of(const TestNetns& ns, const std::string& cmd) {
  tnst::ShResult r = ns.exec(cmd);
  REQUIRE_MESSAGE(r.status == 0, cmd << ": " << r.out);
  if (r.out.find_first_not_of(" \n") == std::string::npos) return nlohmann::json::array();
  return nlohmann::json::parse(r.out);
}

IpAddr ip(const char* text) { return *IpAddr::parse(text); }
Prefix pfx(const char* text) { return *Prefix::parse(text); }
cni::Mac mac(const char* text) { return *cni::Mac::parse(text); }

// Two hosts on one underlay link: tund0 192.168.77.1/24 in a, tund1 192.168.77.2/24 in b.
struct TwoHosts {
  TestNetns a{"ova"};
  TestNetns b{"ovb"};
  TwoHosts() {
    REQUIRE(a.exec("ip link add tund0 type veth peer name tund1 netns " + b.name()).status == 0);
    REQUIRE(a.exec("ip addr add 192.168.77.1/24 dev tund0").status == 0);
    REQUIRE(b.exec("ip addr add 192.168.77.2/24 dev tund1").status == 0);
    REQUIRE(a.exec("ip link set tund0 up").status == 0);
    REQUIRE(b.exec("ip link set tund1 up").status == 0);
  }
};

ov::Overlay overlay_of(const char* local, uint32_t vni = 4242) {
  ov::Overlay o;
  o.vni = vni;
  o.device = ov::default_device(vni);
  o.local = ip(local);
  o.ranges = {pfx("10.32.0.0/12")};
  return o;
}

std::vector<ov::Peer> peers_ab() {
  return {{"a", ip("192.168.77.1"), ov::vtep_mac(ip("192.168.77.1")), {pfx("10.32.1.0/24")}},
          {"b",
           ip("192.168.77.2"),
           ov::vtep_mac(ip("192.168.77.2")),
           {pfx("10.32.2.0/24"), pfx("10.32.3.0/24")}}};
}

}  // namespace

TEST_CASE("vxlan: created with VNI, port, local, nolearning, MTU underlay-50; kept; recreated") {
  TwoHosts h;
  NetnsGuard guard(h.a.fd());
  nl::Socket sock = nl::Socket::open();
  ov::Overlay o = overlay_of("192.168.77.1");
  o.port = 8472;

  bool created = false;
  nl::Link dev = ov::ensure_device(sock, o, &created);
  CHECK(created);
  CHECK(dev.kind == "vxlan");
  CHECK(dev.up());
  CHECK(dev.mtu == 1450);
  CHECK(cni::mac_text(dev.mac) == "02:74:c0:a8:4d:01");
  nlohmann::json d = json_of(h.a, "ip -d -j link show dev tvx4242").at(0);
  const nlohmann::json& data = d["linkinfo"]["info_data"];
  CHECK(data["id"] == 4242);
  CHECK(data["port"] == 8472);
  CHECK(data["local"] == "192.168.77.1");
  CHECK(data["learning"] == false);
  CHECK(data.value("link", "") == "tund0");
  CHECK_FALSE(data.contains("group"));
  CHECK_FALSE(data.contains("remote"));

  auto vx = nl::get_vxlan(sock, "tvx4242");
  REQUIRE(vx.has_value());
  CHECK(vx->vni == 4242);
  CHECK(vx->port == 8472);
  CHECK(vx->local == ip("192.168.77.1"));
  CHECK_FALSE(vx->learning);
  CHECK_FALSE(nl::get_vxlan(sock, "tund0").has_value());
  CHECK_FALSE(nl::get_vxlan(sock, "tvx9").has_value());

  // Again: the same device, nothing recreated.
  CHECK(ov::ensure_device(sock, o, &created).ifindex == dev.ifindex);
  CHECK_FALSE(created);

  // An explicit MTU wins over the underlay rule, applied in place.
  o.mtu = 1400;
  CHECK(ov::ensure_device(sock, o, &created).mtu == 1400);
  CHECK_FALSE(created);

  // The underlay address moved: the kernel cannot change `local` in place, so a new device.
  REQUIRE(h.a.exec("ip addr add 192.168.78.1/24 dev tund0").status == 0);
  o.local = ip("192.168.78.1");
  nl::Link moved = ov::ensure_device(sock, o, &created);
  CHECK(created);
  CHECK(cni::mac_text(moved.mac) == "02:74:c0:a8:4e:01");
  CHECK(nl::get_vxlan(sock, "tvx4242")->local == ip("192.168.78.1"));

  // The underlay MTU decides when no mtu is set.
  REQUIRE(h.a.exec("ip link set tund0 mtu 9000").status == 0);
  o.mtu = 0;
  CHECK(ov::effective_mtu(sock, o) == 8950);

  // A name held by another kind of link is an error, never a silent reuse.
  ov::Overlay clash = overlay_of("192.168.78.1", 77);
  clash.device = "tund0";
  CHECK_THROWS_AS(ov::ensure_device(sock, clash), cni::Error);
  // No link holds the underlay address: an error naming it.
  ov::Overlay nowhere = overlay_of("192.168.99.9", 78);
  try {
    ov::ensure_device(sock, nowhere);
    FAIL("no underlay link, yet a device");
  } catch (const cni::Error& e) {
    CHECK(e.details().find("192.168.99.9") != std::string::npos);
  }
  CHECK(nl::delete_link(sock, "tvx4242"));
  CHECK_FALSE(nl::get_link(sock, "tvx78").has_value());
}

TEST_CASE("netlink batch: permanent neighbours, FDB entries, onlink routes, idempotent") {
  TwoHosts h;
  NetnsGuard guard(h.a.fd());
  nl::Socket sock = nl::Socket::open();
  nl::Link dev = ov::ensure_device(sock, overlay_of("192.168.77.1"));
  const int ifx = dev.ifindex;

  nl::Batch b;
  b.set_fdb(ifx, mac("02:74:c0:a8:4d:02"), ip("192.168.77.2"));
  b.set_neighbour(ifx, ip("10.32.2.0"), mac("02:74:c0:a8:4d:02"));
  b.add_route({.dst = pfx("10.32.2.0/24"), .gateway = ip("10.32.2.0"), .oif = ifx, .onlink = true});
  b.add_address(ifx, pfx("10.32.1.0/32"));
  CHECK(b.size() == 4);
  b.commit(sock);
  CHECK(b.empty());

  auto fdb = nl::list_fdb(sock, ifx);
  REQUIRE(fdb.size() == 1);
  CHECK(fdb[0].mac.str() == "02:74:c0:a8:4d:02");
  CHECK(fdb[0].dst.str() == "192.168.77.2");
  CHECK((fdb[0].state & NUD_PERMANENT) != 0);
  auto neigh = nl::list_neighbours(sock, ifx);
  REQUIRE(neigh.size() == 1);
  CHECK(neigh[0].ip.str() == "10.32.2.0");
  CHECK(cni::mac_text(neigh[0].mac) == "02:74:c0:a8:4d:02");
  CHECK(neigh[0].state == NUD_PERMANENT);
  auto routes = nl::list_routes(sock, AF_INET, ifx);
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].dst.str() == "10.32.2.0/24");
  CHECK(routes[0].gateway == ip("10.32.2.0"));
  CHECK(routes[0].onlink);
  // Independently, as ip(8) and bridge(8) see them.
  CHECK(h.a.exec("bridge fdb show dev tvx4242")
            .out.find("02:74:c0:a8:4d:02 dst 192.168.77.2 self "
                      "permanent") != std::string::npos);
  CHECK(h.a.exec("ip neigh show dev tvx4242")
            .out.find("10.32.2.0 lladdr 02:74:c0:a8:4d:02 "
                      "PERMANENT") != std::string::npos);
  CHECK(h.a.exec("ip route show dev tvx4242").out.find("10.32.2.0/24 via 10.32.2.0 onlink") !=
        std::string::npos);

  // The same batch again changes nothing and fails nothing (replace semantics); a moved peer
  // replaces its FDB destination instead of adding a second one.
  b.set_fdb(ifx, mac("02:74:c0:a8:4d:02"), ip("192.168.77.3"));
  b.set_neighbour(ifx, ip("10.32.2.0"), mac("02:74:c0:a8:4d:02"));
  b.add_route({.dst = pfx("10.32.2.0/24"), .gateway = ip("10.32.2.0"), .oif = ifx, .onlink = true});
  b.add_address(ifx, pfx("10.32.1.0/32"));
  b.commit(sock);
  fdb = nl::list_fdb(sock, ifx);
  REQUIRE(fdb.size() == 1);
  CHECK(fdb[0].dst.str() == "192.168.77.3");
  CHECK(nl::list_neighbours(sock, ifx).size() == 1);
  CHECK(nl::list_routes(sock, AF_INET, ifx).size() == 1);

  // Deletes, twice: the second finds nothing and is still fine.
  for (int i = 0; i < 2; ++i) {
    b.delete_route(
        {.dst = pfx("10.32.2.0/24"), .gateway = ip("10.32.2.0"), .oif = ifx, .onlink = true});
    b.delete_neighbour(ifx, ip("10.32.2.0"));
    b.delete_fdb(ifx, mac("02:74:c0:a8:4d:02"), ip("192.168.77.3"));
    b.delete_address(ifx, pfx("10.32.1.0/32"));
    b.commit(sock);
  }
  CHECK(nl::list_fdb(sock, ifx).empty());
  CHECK(nl::list_neighbours(sock, ifx).empty());
  CHECK(nl::list_routes(sock, AF_INET, ifx).empty());
  CHECK(nl::list_addresses(sock, ifx, AF_INET).empty());

  // Failures are reported one by one, and the good requests of the batch still apply.
  b.set_neighbour(ifx, ip("10.32.4.0"), mac("02:74:00:00:00:04"));
  b.add_route(
      {.dst = pfx("10.32.5.0/24"), .gateway = ip("10.32.5.0"), .oif = 99999, .onlink = true});
  b.set_neighbour(99998, ip("10.32.6.0"), mac("02:74:00:00:00:06"));
  try {
    b.commit(sock);
    FAIL("a batch with bad requests succeeded");
  } catch (const cni::Error& e) {
    const std::string d = e.details();
    CHECK(d.find("add route 10.32.5.0/24") != std::string::npos);
    CHECK(d.find("set neighbour 10.32.6.0") != std::string::npos);
    CHECK(d.find("10.32.4.0") == std::string::npos);
  }
  CHECK(nl::list_neighbours(sock, ifx).size() == 1);

  // More requests than the ACK window.
  for (int i = 0; i < 200; ++i) {
    b.set_neighbour(ifx, ip(("10.33." + std::to_string(i) + ".0").c_str()),
                    mac("02:74:00:00:01:01"));
  }
  b.commit(sock);
  CHECK(nl::list_neighbours(sock, ifx).size() == 201);
  CHECK(nl::delete_link(sock, "tvx4242"));
}

TEST_CASE("overlay sync: peers in, peers out, traffic between two hosts, VNIs apart") {
  TwoHosts h;
  const std::vector<ov::Peer> peers = peers_ab();
  const ov::Overlay oa = overlay_of("192.168.77.1");
  const ov::Overlay ob = overlay_of("192.168.77.2");
  // Each host's block gateway on a bridge, as the bridge plugin puts it.
  REQUIRE(h.a.exec("ip link add tbr0 type bridge").status == 0);
  REQUIRE(h.a.exec("ip addr add 10.32.1.1/24 dev tbr0").status == 0);
  REQUIRE(h.a.exec("ip link set tbr0 up").status == 0);
  REQUIRE(h.b.exec("ip link add tbr0 type bridge").status == 0);
  REQUIRE(h.b.exec("ip addr add 10.32.2.1/24 dev tbr0").status == 0);
  REQUIRE(h.b.exec("ip link set tbr0 up").status == 0);

  auto sync = [&](const TestNetns& ns, const ov::Overlay& o, const std::vector<ov::Peer>& p,
                  const char* self) {
    NetnsGuard guard(ns.fd());
    nl::Socket sock = nl::Socket::open();
    ov::ensure_device(sock, o);
    return ov::sync_peers(sock, o, p, self);
  };
  ov::SyncStats sa = sync(h.a, oa, peers, "a");
  CHECK(sa.added == 6);  // fdb b, 2 neighbours, 2 routes, own 10.32.1.0/32
  CHECK(sa.removed == 0);
  sync(h.b, ob, peers, "b");
  // A second sync with the same peers sends nothing.
  sa = sync(h.a, oa, peers, "a");
  CHECK(sa.added == 0);
  CHECK(sa.removed == 0);

  CHECK(h.a.exec("ip route show dev tvx4242 proto 116").out ==
        "10.32.2.0/24 via 10.32.2.0 onlink \n10.32.3.0/24 via 10.32.3.0 onlink \n");
  CHECK(h.a.exec("bridge fdb show dev tvx4242").out.find("dst 192.168.77.1") == std::string::npos);
  CHECK(h.a.exec("ip -4 -br addr show dev tvx4242").out.find("10.32.1.0/32") != std::string::npos);

  // Traffic from a's block to b's, and back; the receiver sees the sender's own address.
  tnst::ShResult ping = h.a.exec("ping -c 2 -W 2 -I 10.32.1.1 10.32.2.1");
  CHECK_MESSAGE(ping.status == 0, ping.out);
  ping = h.b.exec("ping -c 1 -W 2 -I 10.32.2.1 10.32.1.1");
  CHECK_MESSAGE(ping.status == 0, ping.out);
  // The host itself reaches the remote block too (its source is the device's /32).
  ping = h.a.exec("ping -c 1 -W 2 10.32.2.1");
  CHECK_MESSAGE(ping.status == 0, ping.out);

  // Things someone else changed are put right: a wrong neighbour MAC, a stray route of ours, a
  // stale FDB entry. Routes of other protocols on the device are not ours and stay.
  REQUIRE(h.a.exec("ip neigh replace 10.32.2.0 lladdr 02:00:00:00:00:09 dev tvx4242 nud "
                   "permanent")
              .status == 0);
  REQUIRE(h.a.exec("ip route add 10.32.9.0/24 via 10.32.9.0 dev tvx4242 onlink proto 116").status ==
          0);
  REQUIRE(h.a.exec("ip route add 10.32.8.0/24 dev tvx4242 proto static").status == 0);
  REQUIRE(h.a.exec("bridge fdb append 02:00:00:00:00:09 dev tvx4242 dst 192.168.77.9 self "
                   "permanent")
              .status == 0);
  sa = sync(h.a, oa, peers, "a");
  CHECK(sa.added == 1);
  CHECK(sa.removed == 2);
  CHECK(h.a.exec("ip neigh show 10.32.2.0 dev tvx4242").out.find("02:74:c0:a8:4d:02") !=
        std::string::npos);
  CHECK(h.a.exec("ip route show dev tvx4242 proto 116").out.find("10.32.9.0") == std::string::npos);
  CHECK(h.a.exec("ip route show dev tvx4242").out.find("10.32.8.0/24 proto static") !=
        std::string::npos);
  CHECK(h.a.exec("bridge fdb show dev tvx4242").out.find("02:00:00:00:00:09") == std::string::npos);

  // A second overlay with another VNI and another range on the same hosts: its device routes
  // only its own range, and b's tvx4343 does not answer VNI 4242 traffic.
  ov::Overlay oa2 = overlay_of("192.168.77.1", 4343);
  oa2.ranges = {pfx("10.48.0.0/16")};
  ov::Overlay ob2 = overlay_of("192.168.77.2", 4343);
  ob2.ranges = oa2.ranges;
  std::vector<ov::Peer> peers2 = peers;
  peers2[0].blocks.push_back(pfx("10.48.1.0/24"));
  peers2[1].blocks.push_back(pfx("10.48.2.0/24"));
  sync(h.a, oa2, peers2, "a");
  sync(h.b, ob2, peers2, "b");
  CHECK(h.a.exec("ip route show dev tvx4343 proto 116").out ==
        "10.48.2.0/24 via 10.48.2.0 onlink \n");
  // 4242's device on b goes away: traffic of 4242 must not be carried by 4343's.
  {
    NetnsGuard guard(h.b.fd());
    nl::Socket sock = nl::Socket::open();
    CHECK(nl::delete_link(sock, "tvx4242"));
  }
  ping = h.a.exec("ping -c 1 -W 1 -I 10.32.1.1 10.32.2.1");
  CHECK(ping.status != 0);
  // And back (a host restart rebuilds from the peer set alone).
  sync(h.b, ob, peers, "b");
  ping = h.a.exec("ping -c 1 -W 2 -I 10.32.1.1 10.32.2.1");
  CHECK_MESSAGE(ping.status == 0, ping.out);

  // b leaves: everything of b goes from a's devices, the traffic with it.
  const std::vector<ov::Peer> only_a = {peers[0]};
  sa = sync(h.a, oa, only_a, "a");
  CHECK(sa.added == 0);
  CHECK(sa.removed == 5);  // 2 routes, 2 neighbours, 1 fdb
  {
    NetnsGuard guard(h.a.fd());
    nl::Socket sock = nl::Socket::open();
    const int ifx = nl::require_link(sock, "tvx4242").ifindex;
    CHECK(nl::list_fdb(sock, ifx).empty());
    CHECK(nl::list_neighbours(sock, ifx).empty());
    for (const nl::Route& r : nl::list_routes(sock, AF_INET, ifx)) {
      CHECK(r.protocol != ov::kRouteProtocol);
    }
    // Missing device: an error, not a silent no-op.
    ov::Overlay gone = overlay_of("192.168.77.1", 4545);
    CHECK_THROWS_AS(ov::sync_peers(sock, gone, peers, "a"), cni::Error);
  }
  ping = h.a.exec("ping -c 1 -W 1 -I 10.32.1.1 10.32.2.1");
  CHECK(ping.status != 0);
}

TEST_CASE("overlay sync_all: every spec of the dir, devices recreated, one bad spec reported") {
  TwoHosts h;
  char tmpl[] = "/tmp/tnst-ovdir-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  ov::save_overlay(dir, overlay_of("192.168.77.1", 4242));
  ov::Overlay second = overlay_of("192.168.77.1", 4343);
  second.ranges = {pfx("10.48.0.0/16")};
  ov::save_overlay(dir, second);
  std::vector<ov::Peer> peers = peers_ab();
  peers[1].blocks.push_back(pfx("10.48.2.0/24"));
  {
    NetnsGuard guard(h.a.fd());
    nl::Socket sock = nl::Socket::open();
    // 4242: fdb + 2 neighbours + 2 routes + own /32; 4343: fdb + 1 neighbour + 1 route.
    CHECK(ov::sync_all(sock, dir, peers, "a").added == 9);
    CHECK(ov::sync_all(sock, dir, peers, "a").added == 0);
    // After a "reboot" (devices gone), everything comes back from the specs and the peers.
    CHECK(nl::delete_link(sock, "tvx4242"));
    CHECK(nl::delete_link(sock, "tvx4343"));
    CHECK(ov::sync_all(sock, dir, peers, "a").added == 9);
    CHECK(h.a.exec("ip route show dev tvx4343 proto 116").out ==
          "10.48.2.0/24 via 10.48.2.0 onlink \n");
    // A spec whose underlay address this host does not have fails alone.
    ov::save_overlay(dir, overlay_of("192.168.99.1", 4444));
    try {
      ov::sync_all(sock, dir, peers, "a");
      FAIL("a bad spec went unreported");
    } catch (const cni::Error& e) {
      CHECK(e.details().find("tvx4444") != std::string::npos);
    }
    CHECK(nl::get_link(sock, "tvx4242").has_value());
    CHECK(nl::delete_link(sock, "tvx4242"));
    CHECK(nl::delete_link(sock, "tvx4343"));
  }
  tnst::sh("rm -rf " + dir);
}
