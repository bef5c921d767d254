#include "common/nft.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <netinet/in.h>
#include <sys/file.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/error.h"
#include "common/files.h"
#include "common/netns.h"
#include "common/nft_lock.h"
#include "tests/ns/fixture.h"

using cni::NetnsGuard;
using tnst::table_name;
using tnst::TestNetns;
namespace nft = cni::nft;
using nft::Family;

namespace {

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

namespace {

// Another program's commit: a socket of its own, no lock.
void foreign_commit(const std::function<void(nft::NftTransaction&)>& build) {
  nft::NftTransaction other = nft::NftTransaction::open();
  build(other);
  other.commit();
}

}  // namespace

TEST_CASE("nft: another writer's commit between the reads and the commit does not fail it") {
  TestNetns ns("nftgen");
  NetnsGuard guard(ns.fd());
  const std::string mine = table_name("mine");
  const std::string theirs = table_name("theirs");

  // Unit level: the generation moved, and our batch still lands.
  nft::NftTransaction tx = nft::NftTransaction::open();
  CHECK_FALSE(tx.table_exists(Family::kIpv4, mine));
  foreign_commit([&](nft::NftTransaction& o) { o.add_table(Family::kIpv4, theirs); });
  CHECK(nft::NftTransaction::open().genid() != tx.genid());
  tx.add_table(Family::kIpv4, mine);
  tx.commit();
  CHECK(nft::NftTransaction::open().table_exists(Family::kIpv4, mine));

  // run(): a foreign commit to another table between the reads and the commit, every time:
  // one attempt each, never a failure.
  int attempts = 0;
  for (int i = 0; i < 20; ++i) {
    nft::run([&](nft::NftTransaction& t) {
      ++attempts;
      CHECK(t.table_exists(Family::kIpv4, mine));
      t.add_chain(Family::kIpv4, mine, {.name = "c" + std::to_string(i)});
      foreign_commit([&](nft::NftTransaction& o) {
        o.add_chain(Family::kIpv4, theirs, {.name = "busy" + std::to_string(i)});
      });
    });
  }
  CHECK(attempts == 20);
  CHECK(nft::NftTransaction::open().list_chains(Family::kIpv4, mine)->size() == 20);
}

TEST_CASE("nft: a foreign change that breaks the batch is read again, within a time budget") {
  TestNetns ns("nftbusy");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("busy");
  const nft::Element e{.key = nft::be32(0x0a000001)};
  nft::run([&](nft::NftTransaction& tx) {
    tx.add_table(Family::kIpv4, t);
    tx.add_set(Family::kIpv4, t, {.name = "s", .key = {nft::kTypeIpv4Addr}});
  });

  // The build reads e, finds it and queues its delete; before the commit someone else deletes
  // it (after putting it back for the read). The kernel refuses the delete (ENOENT) and the
  // generation moved: run() starts over. After more attempts than the old limit of five, the
  // other writer stops, the read finds nothing to delete, and the call succeeds.
  auto interfering_build = [&](int& attempts, int interfere_until) {
    return [&, interfere_until](nft::NftTransaction& tx) {
      const bool interfere = ++attempts <= interfere_until;
      if (interfere) {
        foreign_commit([&](nft::NftTransaction& o) { o.add_elements(Family::kIpv4, t, "s", {e}); });
      }
      if (tx.get_element(Family::kIpv4, t, "s", e)) tx.delete_elements(Family::kIpv4, t, "s", {e});
      if (interfere) {
        foreign_commit(
            [&](nft::NftTransaction& o) { o.delete_elements(Family::kIpv4, t, "s", {e}); });
      }
    };
  };
  int attempts = 0;
  nft::run(interfering_build(attempts, 8));
  CHECK(attempts == 9);

  // When it never stops, run() gives up once the budget is spent, with code 11.
  attempts = 0;
  const auto start = std::chrono::steady_clock::now();
  try {
    nft::run(interfering_build(attempts, 1 << 30), std::chrono::milliseconds(300));
    FAIL("run() did not give up");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrTryAgainLater);
    check_contains(e.details(), "delete element from ip " + t + " s");
    check_contains(e.details(), "attempts in");
  }
  const auto spent = std::chrono::steady_clock::now() - start;
  CHECK(attempts > 5);
  CHECK(spent >= std::chrono::milliseconds(150));
  CHECK(spent < std::chrono::seconds(3));

  // A refusal nobody else caused is not retried: the same ENOENT with the generation unchanged.
  attempts = 0;
  try {
    nft::run([&](nft::NftTransaction& tx) {
      ++attempts;
      tx.delete_elements(Family::kIpv4, t, "s", {e});
    });
    FAIL("the batch was accepted");
  } catch (const cni::Error& err) {
    CHECK(err.code() == cni::kErrInternal);
  }
  CHECK(attempts == 1);
}

TEST_CASE("nft: run() holds tether's host-wide commit lock, waits for it, and gives up") {
  TestNetns ns("nftlock");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("lock");
  nft::run([&](nft::NftTransaction& tx) { tx.add_table(Family::kIpv4, t); });  // makes the file

  // Held by "another tether process" (flock excludes another open file of the same process).
  cni::Fd held(open(nft::kCommitLockPath, O_RDWR | O_CLOEXEC));
  REQUIRE(held);
  REQUIRE(flock(held.get(), LOCK_EX) == 0);
  try {
    nft::run([&](nft::NftTransaction& tx) { tx.add_chain(Family::kIpv4, t, {.name = "late"}); },
             std::chrono::milliseconds(100));
    FAIL("run() did not wait for the lock");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrTryAgainLater);
    CHECK(e.msg() == "nftables is busy");
  }
  CHECK(nft::NftTransaction::open().list_chains(Family::kIpv4, t)->empty());

  // Released while run() waits: it goes on.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    flock(held.get(), LOCK_UN);
  });
  const auto start = std::chrono::steady_clock::now();
  nft::run([&](nft::NftTransaction& tx) { tx.add_chain(Family::kIpv4, t, {.name = "after"}); });
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(40));
  release.join();
  CHECK(nft::NftTransaction::open().list_chains(Family::kIpv4, t)->size() == 1);

  // While build() runs, the lock is taken.
  nft::run([&](nft::NftTransaction&) {
    cni::Fd probe(open(nft::kCommitLockPath, O_RDWR | O_CLOEXEC));
    CHECK(flock(probe.get(), LOCK_EX | LOCK_NB) != 0);
  });
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
