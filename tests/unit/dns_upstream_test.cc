#include <doctest/doctest.h>

#include "plugins/dns-sidecar/upstream.h"

using cni::IpAddr;
using cni::dns::parse_upstream;
using cni::dns::Upstream;

namespace {

Upstream up(const char* text) { return *parse_upstream(text); }
IpAddr ip(const char* text) { return *IpAddr::parse(text); }

}  // namespace

TEST_CASE("dns upstream: server forms") {
  CHECK(up("10.0.0.1").port == 53);
  CHECK(up("10.0.0.1:5353").port == 5353);
  CHECK(up("10.0.0.1:5353").addr == ip("10.0.0.1"));
  CHECK(up("fd00::1").addr == ip("fd00::1"));
  CHECK(up("[fd00::1]:54").port == 54);
  CHECK(up("[fd00::1]").port == 53);
  CHECK(up("fe80::1%lo").scope_id != 0);
  CHECK(up("fe80::1%3").scope_id == 3);
  for (const char* bad : {"", "x", "10.0.0.1:0", "10.0.0.1:70000", "fd00::1:53x", "[fd00::1",
                          "[10.0.0.1]:53", "10.0.0.1%lo", "fe80::1%no-such-if0", "1.2.3.4:"}) {
    CHECK_MESSAGE(!parse_upstream(bad), bad);
  }
  CHECK(up("10.0.0.1:5353").str() == "10.0.0.1:5353");
  CHECK(up("[fd00::1]:54").str() == "[fd00::1]:54");
  CHECK(up("10.0.0.1").str() == "10.0.0.1");
}

TEST_CASE("dns upstream: resolv.conf is read leniently") {
  auto servers = cni::dns::parse_resolv_conf(
      "# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver   not-an-ip\n"
      "nameserver\t10.0.0.2 # trailing\n\nnameserver fe80::1%lo\nnameserver 10.0.0.1\n"
      "options ndots:2\nnameserver 127.0.0.53");
  REQUIRE(servers.size() == 4);
  CHECK(servers[0].addr == ip("10.0.0.1"));
  CHECK(servers[1].addr == ip("10.0.0.2"));
  CHECK(servers[2].scope_id != 0);
  CHECK(servers[3].addr == ip("127.0.0.53"));
  CHECK(cni::dns::parse_resolv_conf("").empty());
}

TEST_CASE("dns upstream: per-container > per-network > host, at most three, no loops") {
  std::vector<Upstream> ctr = {up("10.0.0.1")};
  std::vector<Upstream> net = {up("10.0.1.1"), up("10.0.1.2")};
  std::vector<Upstream> host = {up("10.0.2.1"), up("10.0.2.2"), up("10.0.2.3"), up("10.0.2.4")};
  using cni::dns::select_upstreams;
  CHECK(select_upstreams(ctr, net, host, {}) == ctr);
  CHECK(select_upstreams({}, net, host, {}) == net);
  auto h = select_upstreams({}, {}, host, {});
  REQUIRE(h.size() == 3);
  CHECK(h[2] == host[2]);
  // A server that is one of our own listening addresses would loop: it is skipped, and a list
  // left empty by that falls through to the next source.
  CHECK(select_upstreams({up("10.9.0.1")}, {}, host, {ip("10.9.0.1")}).front() == host[0]);
  CHECK(select_upstreams({}, {}, {}, {}).empty());
  CHECK(cni::dns::per_server_timeout_ms(1) == 5000);
  CHECK(cni::dns::per_server_timeout_ms(2) == 2500);
  CHECK(cni::dns::per_server_timeout_ms(3) * 3 <= 5000);
}
