// Block arithmetic and the agent's persisted claims (plugins/agent/blocks.h), node records.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

#include "common/error.h"
#include "plugins/agent/blocks.h"
#include "plugins/agent/peers.h"

using namespace cni;
using namespace cni::agent;

namespace {
Prefix P(const char* s) { return *Prefix::parse(s); }
}  // namespace

TEST_CASE("blocks of a cluster range") {
  Prefix r = P("10.32.0.0/12");
  CHECK(block_count(r, 24) == 4096);
  CHECK(block_count(r, 12) == 1);
  CHECK(nth_block(r, 24, 0).str() == "10.32.0.0/24");
  CHECK(nth_block(r, 24, 1).str() == "10.32.1.0/24");
  CHECK(nth_block(r, 24, 256).str() == "10.33.0.0/24");
  CHECK(nth_block(r, 24, 4095).str() == "10.47.255.0/24");
  CHECK(nth_block(r, 26, 5).str() == "10.32.1.64/26");
  CHECK(nth_block(P("10.0.0.0/8"), 30, 3).str() == "10.0.0.12/30");
  std::set<Prefix> all;
  for (uint64_t i = 0; i < 64; ++i) {
    Prefix b = nth_block(P("192.168.0.0/16"), 22, i);
    CHECK(P("192.168.0.0/16").contains(b.addr()));
    all.insert(b);
  }
  CHECK(all.size() == 64);
  Prefix v6 = P("fd00:10::/48");
  CHECK(block_count(v6, 64) == 65536);
  CHECK(nth_block(v6, 64, 0x1234).str() == "fd00:10:0:1234::/64");
  CHECK(block_count(P("fd00::/8"), 120, 1000) == 1000);  // capped
  CHECK_NOTHROW(check_block_size(r, 24, "ipam.blockSize"));
  CHECK_THROWS_AS(check_block_size(r, 11, "ipam.blockSize"), Error);
  CHECK_THROWS_AS(check_block_size(r, 31, "ipam.blockSize"), Error);
}

TEST_CASE("prefix ids are etcd key components and parse back") {
  CHECK(prefix_id(P("10.32.0.0/12")) == "10.32.0.0-12");
  CHECK(prefix_id(P("10.32.1.7/24")) == "10.32.1.0-24");
  CHECK(parse_prefix_id("10.32.3.0-24") == P("10.32.3.0/24"));
  CHECK(parse_prefix_id(prefix_id(P("fd00:10::/64"))) == P("fd00:10::/64"));
  CHECK(!parse_prefix_id("10.32.3.1-24"));  // not a network address
  CHECK(!parse_prefix_id("10.32.3.0"));
  CHECK(!parse_prefix_id("x-24"));
}

TEST_CASE("claims persist and load back") {
  char tmpl[] = "/tmp/tether-claims-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string path = std::string(tmpl) + "/claims.json";
  CHECK(ClaimState::load(path).claims.empty());
  ClaimState s;
  s.node = "h1";
  s.claims = {{P("10.32.0.0/12"), P("10.32.5.0/24")},
              {P("10.32.0.0/12"), P("10.32.1.0/24")},
              {P("10.64.0.0/16"), P("10.64.9.0/24")}};
  s.releasing = {{P("10.32.0.0/12"), P("10.32.2.0/24")}};
  s.save(path);
  ClaimState t = ClaimState::load(path);
  CHECK(t.node == "h1");
  CHECK(t.claims == s.claims);
  CHECK(t.releasing == s.releasing);
  CHECK(t.blocks_in(P("10.32.0.0/12")) ==
        std::vector<Prefix>{P("10.32.1.0/24"), P("10.32.5.0/24")});
  CHECK(t.blocks_in(P("10.99.0.0/16")).empty());
  std::string cmd = "rm -rf " + std::string(tmpl);
  CHECK(std::system(cmd.c_str()) == 0);
}

TEST_CASE("node records round-trip; a bad one is refused") {
  NodeRecord n;
  n.node = "docker1";
  n.underlay = *IpAddr::parse("192.168.50.101");
  n.vtep_mac = *cni::Mac::parse("02:74:c0:a8:32:65");
  n.blocks = {P("10.32.1.0/24"), P("10.32.7.0/24")};
  auto back = node_from_json(node_to_json(n).dump());
  REQUIRE(back);
  CHECK(back->node == n.node);
  CHECK(back->underlay == n.underlay);
  CHECK(back->vtep_mac == n.vtep_mac);
  CHECK(back->blocks == n.blocks);
  CHECK(!node_from_json("{"));
  CHECK(!node_from_json(R"({"node":"a/b","address":"10.0.0.1"})"));
  CHECK(!node_from_json(R"({"node":"a","address":"nope"})"));
  CHECK(!node_from_json(
      R"({"node":"a","address":"10.0.0.1","vtepMac":"02:74:0a:00:00:01","blocks":["x"]})"));
  // Without a VTEP MAC, or with one that is not a MAC, the host cannot be reached: refused.
  CHECK(!node_from_json(R"({"node":"a","address":"10.0.0.1"})"));
  CHECK(!node_from_json(R"({"node":"a","address":"10.0.0.1","vtepMac":"02:74:zz:00:00:01"})"));
  auto bare = node_from_json(R"({"node":"a","address":"10.0.0.1","vtepMac":"02-74-0A-00-00-01"})");
  REQUIRE(bare);
  CHECK(bare->blocks.empty());
  CHECK(bare->vtep_mac.str() == "02:74:0a:00:00:01");
}
