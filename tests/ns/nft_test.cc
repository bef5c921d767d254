#include "common/nft.h"

#include <doctest/doctest.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/netns.h"
#include "tests/ns/fixture.h"

using cni::NetnsGuard;
using tnst::TestNetns;
namespace nft = cni::nft;
using nft::Family;

namespace {

std::string table_name(const std::string& suffix) { return tnst::prefix() + "_" + suffix; }

nft::Bytes addr(const char* text) { return nft::addr(*cni::IpAddr::parse(text)); }
cni::Prefix net(const char* text) { return *cni::Prefix::parse(text); }

std::string nft_list(const TestNetns& ns, const std::string& what) {
  tnst::ShResult r = ns.exec("nft list " + what);
  CHECK_MESSAGE(r.status == 0, r.out);
  return r.out;
}

void check_contains(const std::string& text, const std::string& needle) {
  CHECK_MESSAGE(text.find(needle) != std::string::npos, "missing: " << needle << "\nin:\n" << text);
}

// The rules and sets the bridge and portmap plugins need, in one batch.
void build_ruleset(nft::NftTransaction& tx, const std::string& t) {
  const Family ip = Family::kIpv4;
  tx.add_table(ip, t);
  tx.add_chain(ip, t, {.name = "fwd", .hook = nft::Hook{NF_INET_FORWARD, 0, "filter", NF_ACCEPT}});
  tx.add_chain(ip, t, {.name = "pre", .hook = nft::Hook{NF_INET_PRE_ROUTING, -100, "nat"}});
  tx.add_chain(ip, t, {.name = "post", .hook = nft::Hook{NF_INET_POST_ROUTING, 100, "nat"}});
  tx.add_chain(ip, t, {.name = "c2"});
  tx.add_set(ip, t,
             {.name = "hostports",
              .key = {nft::kTypeIpv4Addr, nft::kTypeInetService},
              .data = {nft::kTypeIpv4Addr, nft::kTypeInetService}});
  tx.add_set(ip, t, {.name = "ports", .key = {nft::kTypeInetProto, nft::kTypeInetService}});
  tx.add_set(ip, t, {.name = "byif", .key = {nft::kTypeIfname}, .verdict_map = true});
  tx.add_set(ip, t, {.name = "marks", .key = {nft::kTypeMark}});
  tx.add_elements(ip, t, "hostports",
                  {{.key = nft::concat({addr("10.0.0.1"), nft::be16(8080)}),
                    .data = nft::concat({addr("10.1.0.2"), nft::be16(80)})}});
  tx.add_elements(ip, t, "ports", {{.key = nft::concat({nft::u8(IPPROTO_TCP), nft::be16(80)})}});
  tx.add_elements(ip, t, "byif",
                  {{.key = nft::ifname("tveth0"), .verdict = nft::Verdict::jump("c2")}});
  tx.add_elements(ip, t, "marks", {{.key = nft::host32(0x2000)}});

  const uint32_t est_rel = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
  tx.add_rule(nft::Rule(ip, t, "fwd")
                  .iifname("br0")
                  .oifname("br0", false)
                  .ct_state(est_rel)
                  .counter()
                  .verdict(nft::Verdict::accept())
                  .comment("tag1"));
  tx.add_rule(nft::Rule(ip, t, "fwd")
                  .l4proto(IPPROTO_TCP)
                  .payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, nft::reg32(0))
                  .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, nft::reg32(1))
                  .lookup("hostports", nft::kReg1)
                  .counter());
  tx.add_rule(nft::Rule(ip, t, "fwd").fib_daddr_local().verdict(nft::Verdict::jump("c2")));
  tx.add_rule(
      nft::Rule(ip, t, "fwd").meta(NFT_META_IIFNAME).lookup("byif", nft::kReg1, nft::kRegVerdict));
  tx.add_rule(nft::Rule(ip, t, "c2").dport(IPPROTO_UDP, 53).verdict(nft::Verdict::drop()));
  tx.add_rule(nft::Rule(ip, t, "pre")
                  .l4proto(IPPROTO_TCP)
                  .payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, nft::reg32(0))
                  .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, nft::reg32(1))
                  .lookup("hostports", nft::kReg1, nft::kReg1)
                  .nat({.type = NFT_NAT_DNAT,
                        .family = Family::kIpv4,
                        .addr_min = nft::kReg1,
                        .proto_min = nft::reg32(1)})
                  .comment("tag2"));
  tx.add_rule(nft::Rule(ip, t, "post")
                  .saddr(net("10.1.0.7/24"))  // host bits are not part of the match
                  .daddr(net("10.1.0.0/24"), false)
                  .daddr(net("10.9.9.9/32"), false)
                  .masquerade()
                  .comment("tag1"));

  // inet tables need the nfproto dependency before an IP header match.
  tx.add_table(Family::kInet, t);
  tx.add_chain(Family::kInet, t, {.name = "in"});
  tx.add_rule(nft::Rule(Family::kInet, t, "in")
                  .nfproto(NFPROTO_IPV6)
                  .saddr(net("fd00:10::1/64"))
                  .counter()
                  .verdict(nft::Verdict::ret()));
}

}  // namespace

TEST_CASE("nft: one batch builds tables, chains, concatenated maps and tagged rules") {
  TestNetns ns("nft");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("fw");
  const Family ip = Family::kIpv4;

  nft::run([&](nft::NftTransaction& tx) { build_ruleset(tx, t); });

  // Read back through our helpers.
  nft::NftTransaction tx = nft::NftTransaction::open();
  CHECK(tx.table_exists(ip, t));
  CHECK(tx.table_exists(Family::kInet, t));
  CHECK_FALSE(tx.table_exists(Family::kIpv6, t));
  std::optional<std::vector<nft::ChainInfo>> chains = tx.list_chains(ip, t);
  REQUIRE(chains.has_value());
  CHECK(chains->size() == 4);
  for (const nft::ChainInfo& c : *chains) {
    if (c.name == "fwd") {
      REQUIRE(c.hook.has_value());
      CHECK(c.hook->hooknum == NF_INET_FORWARD);
      CHECK(c.hook->type == "filter");
      CHECK(c.hook->policy == NF_ACCEPT);
    } else if (c.name == "pre") {
      REQUIRE(c.hook.has_value());
      CHECK(c.hook->priority == -100);
      CHECK(c.hook->type == "nat");
    } else if (c.name == "c2") {
      CHECK_FALSE(c.hook.has_value());
    }
  }
  std::optional<std::vector<nft::Element>> hp = tx.list_elements(ip, t, "hostports");
  REQUIRE(hp.has_value());
  REQUIRE(hp->size() == 1);
  CHECK((*hp)[0].key == nft::concat({addr("10.0.0.1"), nft::be16(8080)}));
  CHECK((*hp)[0].data == nft::concat({addr("10.1.0.2"), nft::be16(80)}));
  std::optional<std::vector<nft::Element>> byif = tx.list_elements(ip, t, "byif");
  REQUIRE(byif.has_value());
  REQUIRE(byif->size() == 1);
  CHECK((*byif)[0].verdict == nft::Verdict::jump("c2"));
  std::optional<std::vector<nft::RuleInfo>> rules = tx.list_rules(ip, t, "fwd");
  REQUIRE(rules.has_value());
  REQUIRE(rules->size() == 4);
  CHECK((*rules)[0].comment == "tag1");
  CHECK((*rules)[1].comment == "");
  CHECK((*rules)[0].handle != 0);
  CHECK((*rules)[0].handle != (*rules)[1].handle);

  // And through the nft CLI, which must decode every expression and set definition we made.
  const std::string text = nft_list(ns, "table ip " + t);
  check_contains(text,
                 "iifname \"br0\" oifname != \"br0\" ct state established,related counter packets "
                 "0 bytes 0 accept comment \"tag1\"");
  check_contains(text, "ip daddr . tcp dport @hostports counter packets 0 bytes 0");
  check_contains(text, "fib daddr type local jump c2");
  check_contains(text, "iifname vmap @byif");
  check_contains(text, "udp dport 53 drop");
  check_contains(text, "dnat ip to ip daddr . tcp dport map @hostports comment \"tag2\"");
  check_contains(text,
                 "ip saddr 10.1.0.0/24 ip daddr != 10.1.0.0/24 ip daddr != 10.9.9.9 masquerade "
                 "comment \"tag1\"");
  check_contains(text, "type ipv4_addr . inet_service : ipv4_addr . inet_service");
  check_contains(text, "elements = { 10.0.0.1 . 8080 : 10.1.0.2 . 80 }");
  check_contains(text, "type inet_proto . inet_service");
  check_contains(text, "elements = { tcp . 80 }");
  check_contains(text, "type ifname : verdict");
  check_contains(text, "elements = { \"tveth0\" : jump c2 }");
  check_contains(text, "type mark");
  check_contains(text, "elements = { 0x00002000 }");
  check_contains(text, "type filter hook forward priority filter; policy accept;");
  check_contains(text, "type nat hook prerouting priority dstnat; policy accept;");
  CHECK(text.find("unknown") == std::string::npos);
  CHECK(text.find("invalid") == std::string::npos);
  check_contains(nft_list(ns, "table inet " + t),
                 "ip6 saddr fd00:10::/64 counter packets 0 bytes 0 return");

  tnst::ShResult js = ns.exec("nft -j list table ip " + t);
  REQUIRE(js.status == 0);
  nlohmann::json doc = nlohmann::json::parse(js.out);
  int tagged = 0;
  for (const nlohmann::json& item : doc["nftables"]) {
    if (item.contains("rule") && item["rule"].value("comment", "") == "tag1") {
      ++tagged;
    }
  }
  CHECK(tagged == 2);

  // Per-attachment cleanup: delete the rules tagged "tag1" by handle, and one map element.
  nft::run([&](nft::NftTransaction& del) {
    for (const char* chain : {"fwd", "post"}) {
      const std::vector<nft::RuleInfo> rules = del.list_rules(ip, t, chain).value();
      for (const nft::RuleInfo& r : rules) {
        if (r.comment == "tag1") {
          del.delete_rule(ip, t, chain, r.handle);
        }
      }
    }
    del.delete_elements(ip, t, "hostports",
                        {{.key = nft::concat({addr("10.0.0.1"), nft::be16(8080)})}});
  });
  nft::NftTransaction after = nft::NftTransaction::open();
  CHECK(after.list_rules(ip, t, "fwd")->size() == 3);
  CHECK(after.list_rules(ip, t, "post")->empty());
  CHECK(after.list_elements(ip, t, "hostports")->empty());
  CHECK(nft_list(ns, "table ip " + t).find("tag1") == std::string::npos);

  nft::run([&](nft::NftTransaction& tx2) { tx2.flush_chain(ip, t, "fwd"); });
  CHECK(nft::NftTransaction::open().list_rules(ip, t, "fwd")->empty());

  nft::run([&](nft::NftTransaction& tx2) {
    tx2.delete_table(ip, t);
    tx2.delete_table(Family::kInet, t);
  });
  nft::NftTransaction gone = nft::NftTransaction::open();
  CHECK_FALSE(gone.table_exists(ip, t));
  CHECK_FALSE(gone.list_chains(ip, t).has_value());
  CHECK_FALSE(gone.list_elements(ip, t, "hostports").has_value());
  CHECK_FALSE(gone.list_rules(ip, t, "fwd").has_value());
  CHECK(ns.exec("nft list tables").out.empty());
}

TEST_CASE("nft: a batch with one bad message applies nothing and reports the kernel's error") {
  TestNetns ns("nftbad");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("bad");
  try {
    nft::run([&](nft::NftTransaction& tx) {
      tx.add_table(Family::kIpv4, t);
      tx.add_chain(Family::kIpv4, t, {.name = "c"});
      tx.add_rule(nft::Rule(Family::kIpv4, t, "c").counter());
      tx.add_rule(nft::Rule(Family::kIpv4, t, "c").verdict(nft::Verdict::jump("missing")));
    });
    FAIL("the batch was accepted");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrInternal);
    check_contains(e.details(), "add rule ip " + t + " c: No such file or directory");
    CHECK(e.details().find("add table") == std::string::npos);  // only failed messages listed
  }
  CHECK_FALSE(nft::NftTransaction::open().table_exists(Family::kIpv4, t));
  CHECK(ns.exec("nft list tables").out.empty());

  // Deleting something absent fails the batch too: DEL must read before it deletes.
  nft::NftTransaction tx = nft::NftTransaction::open();
  tx.delete_table(Family::kIpv4, t);
  CHECK_THROWS_AS(tx.commit(), cni::Error);
  CHECK_THROWS_AS(tx.commit(), cni::Error);  // spent
}

TEST_CASE("nft: a concurrent change makes the commit fail with ERESTART and run() retries") {
  TestNetns ns("nftgen");
  NetnsGuard guard(ns.fd());
  const std::string mine = table_name("mine");
  const std::string theirs = table_name("theirs");

  // Unit level: a stale generation id is refused as a whole.
  {
    nft::NftTransaction stale = nft::NftTransaction::open();
    nft::NftTransaction other = nft::NftTransaction::open();
    other.add_table(Family::kIpv4, theirs);
    other.commit();
    CHECK(nft::NftTransaction::open().genid() != stale.genid());
    stale.add_table(Family::kIpv4, mine);
    try {
      stale.commit();
      FAIL("a stale generation was accepted");
    } catch (const cni::Error& e) {
      CHECK(e.code() == cni::kErrTryAgainLater);
    }
    CHECK_FALSE(nft::NftTransaction::open().table_exists(Family::kIpv4, mine));
  }

  // run() rebuilds on a fresh generation.
  int attempts = 0;
  nft::run([&](nft::NftTransaction& tx) {
    ++attempts;
    tx.add_table(Family::kIpv4, mine);
    if (attempts == 1) {
      nft::NftTransaction other = nft::NftTransaction::open();
      other.add_chain(Family::kIpv4, theirs, {.name = "meanwhile"});
      other.commit();
    }
  });
  CHECK(attempts == 2);
  CHECK(nft::NftTransaction::open().table_exists(Family::kIpv4, mine));

  // ...and gives up with code 11 when the ruleset never holds still.
  attempts = 0;
  try {
    nft::run(
        [&](nft::NftTransaction& tx) {
          ++attempts;
          tx.add_table(Family::kIpv4, table_name("never"));
          nft::NftTransaction other = nft::NftTransaction::open();
          other.add_chain(Family::kIpv4, theirs, {.name = "busy" + std::to_string(attempts)});
          other.commit();
        },
        3);
    FAIL("run() did not give up");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrTryAgainLater);
  }
  CHECK(attempts == 3);
  CHECK_FALSE(nft::NftTransaction::open().table_exists(Family::kIpv4, table_name("never")));
}

TEST_CASE("nft: large batches span pages and element messages are chunked") {
  TestNetns ns("nftbig");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("big");
  std::vector<nft::Element> elements;
  for (uint32_t i = 0; i < 3000; ++i) {
    elements.push_back({.key = nft::concat({nft::be32(0x0a000000 + i), nft::be16(1000 + i % 50)}),
                        .data = nft::concat({nft::be32(0x0a640000 + i), nft::be16(80)})});
  }
  nft::run([&](nft::NftTransaction& tx) {
    tx.add_table(Family::kIpv4, t);
    tx.add_set(Family::kIpv4, t,
               {.name = "m",
                .key = {nft::kTypeIpv4Addr, nft::kTypeInetService},
                .data = {nft::kTypeIpv4Addr, nft::kTypeInetService}});
    tx.add_elements(Family::kIpv4, t, "m", elements);
    tx.add_chain(Family::kIpv4, t, {.name = "c"});
    for (int i = 0; i < 300; ++i) {
      tx.add_rule(nft::Rule(Family::kIpv4, t, "c")
                      .iifname("veth" + std::to_string(i))
                      .counter()
                      .verdict(nft::Verdict::accept())
                      .comment("attachment-" + std::to_string(i)));
    }
  });
  nft::NftTransaction tx = nft::NftTransaction::open();
  CHECK(tx.list_elements(Family::kIpv4, t, "m")->size() == elements.size());
  std::vector<nft::RuleInfo> rules = tx.list_rules(Family::kIpv4, t, "c").value();
  REQUIRE(rules.size() == 300);
  CHECK(rules[299].comment == "attachment-299");
}
