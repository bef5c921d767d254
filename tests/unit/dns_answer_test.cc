// The answer function fed with queries built by ldns, answers read back with ldns.
#include <doctest/doctest.h>

#include <set>

#include "plugins/dns-sidecar/answer.h"
#include "plugins/dns-sidecar/ldns_ptr.h"
#include "tests/unit/dns_test_record.h"

using cni::IpAddr;
using cni::dns::Decision;
using cni::dns::Index;
using cni::dns::PktPtr;
using cni::dns::Record;
using cni::dns::Transport;

namespace {

IpAddr ip(const char* text) { return *IpAddr::parse(text); }

using cni::dns::test::rec;

struct World {
  World() {
    Record web1 = rec("a", "c1", "web1", {"10.1.0.2/24", "fd01::2/64"}, "10.1.0.1");
    web1.aliases = {"svc", "db"};
    web1.container_aliases = {"me", "backend=web2"};
    web1.upstreams = {"10.99.0.1"};
    Record web2 = rec("a", "c2", "web2", {"10.1.0.3/24"}, "10.1.0.1");
    web2.aliases = {"svc"};
    Record other = rec("b", "c3", "other", {"10.2.0.2/24"}, "10.2.0.1");
    Record multi_a = rec("a", "c4", "multi", {"10.1.0.4/24"}, "10.1.0.1");
    Record multi_b = rec("b", "c4", "multi", {"10.2.0.4/24"}, "10.2.0.1");
    multi_b.key.ifname = "eth1";
    Record internal = rec("i", "c5", "lonely", {"10.3.0.2/24"}, "10.3.0.1");
    internal.net.internal = true;
    for (auto* r : {&web1, &web2, &other, &multi_a, &multi_b, &internal}) reg.upsert(*r);
    index = Index::build(reg, 53);
  }
  cni::dns::Registry reg;
  Index index;
  std::vector<cni::dns::Upstream> host = {*cni::dns::parse_upstream("10.99.0.3")};
  std::minstd_rand rng{1};

  Decision ask(const char* from, const char* name, ldns_rr_type type = LDNS_RR_TYPE_A,
               Transport t = Transport::kUdp, int edns = 0) {
    PktPtr q(ldns_pkt_query_new(ldns_dname_new_frm_str(name), type, LDNS_RR_CLASS_IN, LDNS_RD));
    ldns_pkt_set_id(q.get(), 4711);
    if (edns) ldns_pkt_set_edns_udp_size(q.get(), static_cast<uint16_t>(edns));
    uint8_t* wire = nullptr;
    size_t len = 0;
    REQUIRE(ldns_pkt2wire(&wire, q.get(), &len) == LDNS_STATUS_OK);
    cni::dns::MallocPtr<uint8_t> own(wire);
    return answer_query(index, ip(from), wire, len, t, host, rng);
  }
};

PktPtr parse(const Decision& d) {
  REQUIRE(d.kind == Decision::Kind::kReply);
  ldns_pkt* p = nullptr;
  REQUIRE(ldns_wire2pkt(&p, d.reply.data(), d.reply.size()) == LDNS_STATUS_OK);
  return PktPtr(p);
}

int rcode(const Decision& d) { return ldns_pkt_get_rcode(parse(d).get()); }

// The answer section's data as text ("10.1.0.2", "web1.test.internal."), in order.
std::vector<std::string> answers(const Decision& d) {
  PktPtr p = parse(d);
  CHECK(ldns_pkt_id(p.get()) == 4711);
  CHECK(ldns_pkt_qr(p.get()));
  std::vector<std::string> out;
  ldns_rr_list* an = ldns_pkt_answer(p.get());
  for (size_t i = 0; i < ldns_rr_list_rr_count(an); ++i) {
    cni::dns::MallocPtr<char> s(ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, i), 0)));
    out.emplace_back(s.get());
  }
  return out;
}

std::set<std::string> answer_set(const Decision& d) {
  auto v = answers(d);
  return {v.begin(), v.end()};
}

}  // namespace

TEST_CASE("dns answer: names in scope, with and without the domain, any case") {
  World w;
  CHECK(answers(w.ask("10.1.0.3", "web1")) == std::vector<std::string>{"10.1.0.2"});
  CHECK(answers(w.ask("10.1.0.3", "WEB1.Test.Internal.")) == std::vector<std::string>{"10.1.0.2"});
  CHECK(answers(w.ask("10.1.0.3", "web1", LDNS_RR_TYPE_AAAA)) ==
        std::vector<std::string>{"fd01::2"});
  CHECK(answers(w.ask("10.1.0.3", "db")) == std::vector<std::string>{"10.1.0.2"});
  CHECK(ldns_pkt_aa(parse(w.ask("10.1.0.3", "web1")).get()));
  // The owner name is echoed as asked (0x20 case randomization keeps working).
  PktPtr p = parse(w.ask("10.1.0.3", "wEb1"));
  cni::dns::MallocPtr<char> owner(
      ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(p.get()), 0))));
  CHECK(std::string(owner.get()) == "wEb1.");
}

TEST_CASE("dns answer: NODATA for the other family or type, NXDOMAIN only under our domain") {
  World w;
  auto d = w.ask("10.1.0.2", "web2", LDNS_RR_TYPE_AAAA);
  CHECK(rcode(d) == LDNS_RCODE_NOERROR);
  CHECK(answers(d).empty());
  CHECK(rcode(w.ask("10.1.0.2", "web2", LDNS_RR_TYPE_MX)) == LDNS_RCODE_NOERROR);
  CHECK(rcode(w.ask("10.1.0.2", "nosuch.test.internal")) == LDNS_RCODE_NXDOMAIN);
  CHECK(w.ask("10.1.0.2", "nosuch").kind == Decision::Kind::kForward);
  auto any = w.ask("10.1.0.3", "web1", LDNS_RR_TYPE_ANY);
  CHECK(answer_set(any) == std::set<std::string>{"10.1.0.2", "fd01::2"});
}

TEST_CASE("dns answer: scope by source address") {
  World w;
  // Network-scoped: b cannot see a's names or aliases.
  CHECK(w.ask("10.2.0.2", "web1").kind == Decision::Kind::kForward);
  CHECK(rcode(w.ask("10.2.0.2", "svc.test.internal")) == LDNS_RCODE_NXDOMAIN);
  // The multi-homed container sees both networks, whichever it asks.
  CHECK(answers(w.ask("10.1.0.4", "other")) == std::vector<std::string>{"10.2.0.2"});
  CHECK(answers(w.ask("10.2.0.4", "web2")) == std::vector<std::string>{"10.1.0.3"});
  // Others see it by its address on their network.
  CHECK(answers(w.ask("10.2.0.2", "multi")) == std::vector<std::string>{"10.2.0.4"});
  // An unregistered address inside a registered subnet gets that network's view.
  CHECK(answers(w.ask("10.1.0.200", "web2")) == std::vector<std::string>{"10.1.0.3"});
  // Strangers get nothing at all, not even an error.
  CHECK(w.ask("192.168.7.7", "web1").kind == Decision::Kind::kDrop);
  CHECK(w.ask("10.1.1.2", "web1").kind == Decision::Kind::kDrop);
}

TEST_CASE("dns answer: container-scoped aliases") {
  World w;
  CHECK(answer_set(w.ask("10.1.0.2", "me")) == std::set<std::string>{"10.1.0.2"});
  CHECK(answer_set(w.ask("10.1.0.2", "me", LDNS_RR_TYPE_AAAA)) == std::set<std::string>{"fd01::2"});
  CHECK(answers(w.ask("10.1.0.2", "backend.test.internal")) ==
        std::vector<std::string>{"10.1.0.3"});
  CHECK(w.ask("10.1.0.3", "me").kind == Decision::Kind::kForward);
  CHECK(rcode(w.ask("10.1.0.3", "backend.test.internal")) == LDNS_RCODE_NXDOMAIN);
}

TEST_CASE("dns answer: a shared name answers every address, shuffled per query") {
  World w;
  std::set<std::vector<std::string>> orders;
  for (int i = 0; i < 50; ++i) {
    auto a = answers(w.ask("10.1.0.4", "svc"));
    CHECK(std::set<std::string>(a.begin(), a.end()) ==
          std::set<std::string>{"10.1.0.2", "10.1.0.3"});
    orders.insert(a);
  }
  CHECK(orders.size() == 2);
}

TEST_CASE("dns answer: PTR within scope") {
  World w;
  CHECK(answers(w.ask("10.1.0.3", "2.0.1.10.in-addr.arpa", LDNS_RR_TYPE_PTR)) ==
        std::vector<std::string>{"web1.test.internal."});
  CHECK(answers(w.ask("10.1.0.3", cni::dns::reverse_name(ip("fd01::2")).c_str(),
                      LDNS_RR_TYPE_PTR)) == std::vector<std::string>{"web1.test.internal."});
  // Not in scope: forwarded like any other name.
  CHECK(w.ask("10.2.0.2", "2.0.1.10.in-addr.arpa", LDNS_RR_TYPE_PTR).kind ==
        Decision::Kind::kForward);
}

TEST_CASE("dns answer: forwarding picks per-container, then per-network, then host servers") {
  World w;
  auto d = w.ask("10.1.0.2", "example.com");
  REQUIRE(d.kind == Decision::Kind::kForward);
  CHECK(d.upstreams.front().str() == "10.99.0.1");
  CHECK(w.ask("10.1.0.3", "example.com").upstreams.front().str() == "10.99.0.2");
  // Internal networks answer NXDOMAIN instead of forwarding.
  auto in = w.ask("10.3.0.2", "example.com");
  CHECK(rcode(in) == LDNS_RCODE_NXDOMAIN);
  CHECK(!ldns_pkt_ra(parse(in).get()));
  CHECK(answers(w.ask("10.3.0.2", "lonely")) == std::vector<std::string>{"10.3.0.2"});
  // No server anywhere: SERVFAIL right away.
  cni::dns::Registry reg;
  Record r = rec("n", "c", "x", {"10.5.0.2/24"}, "10.5.0.1");
  r.net.upstreams.clear();
  reg.upsert(r);
  w.index = Index::build(reg, 53);
  w.host.clear();
  CHECK(rcode(w.ask("10.5.0.2", "example.com")) == LDNS_RCODE_SERVFAIL);
}

TEST_CASE("dns answer: UDP truncation honours EDNS0; TCP is complete") {
  cni::dns::Registry reg;
  for (int i = 0; i < 60; ++i) {
    std::string cid = "c" + std::to_string(i);
    std::string addr = "10.7.0." + std::to_string(i + 2) + "/24";
    Record r = rec("big", cid.c_str(), "big", {addr.c_str()}, "10.7.0.1");
    reg.upsert(r);
  }
  World w;
  w.index = Index::build(reg, 53);
  auto plain = parse(w.ask("10.7.0.2", "big"));
  CHECK(ldns_pkt_tc(plain.get()));
  CHECK(ldns_pkt_ancount(plain.get()) > 0);
  CHECK(ldns_pkt_ancount(plain.get()) < 60);
  auto d = w.ask("10.7.0.2", "big");
  CHECK(d.reply.size() <= 512);
  auto edns = parse(w.ask("10.7.0.2", "big", LDNS_RR_TYPE_A, Transport::kUdp, 4096));
  CHECK(!ldns_pkt_tc(edns.get()));
  CHECK(ldns_pkt_ancount(edns.get()) == 60);
  CHECK(ldns_pkt_edns_udp_size(edns.get()) == cni::dns::kEdnsSize);
  auto tcp = parse(w.ask("10.7.0.2", "big", LDNS_RR_TYPE_A, Transport::kTcp));
  CHECK(!ldns_pkt_tc(tcp.get()));
  CHECK(ldns_pkt_ancount(tcp.get()) == 60);
}

TEST_CASE("dns answer: malformed input and responses are dropped, odd queries answered") {
  World w;
  const uint8_t junk[] = {1, 2, 3};
  CHECK(answer_query(w.index, ip("10.1.0.2"), junk, sizeof(junk), Transport::kUdp, w.host, w.rng)
            .kind == Decision::Kind::kDrop);
  CHECK(answer_query(w.index, ip("10.1.0.2"), nullptr, 0, Transport::kUdp, w.host, w.rng).kind ==
        Decision::Kind::kDrop);
  // A response sent to us is never answered (no reflection loops).
  PktPtr q(ldns_pkt_query_new(ldns_dname_new_frm_str("web1"), LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN,
                              LDNS_RD));
  ldns_pkt_set_qr(q.get(), true);
  uint8_t* wire = nullptr;
  size_t len = 0;
  REQUIRE(ldns_pkt2wire(&wire, q.get(), &len) == LDNS_STATUS_OK);
  cni::dns::MallocPtr<uint8_t> own(wire);
  CHECK(answer_query(w.index, ip("10.1.0.2"), wire, len, Transport::kUdp, w.host, w.rng).kind ==
        Decision::Kind::kDrop);
  // Other opcodes: NOTIMP.
  ldns_pkt_set_qr(q.get(), false);
  ldns_pkt_set_opcode(q.get(), LDNS_PACKET_UPDATE);
  uint8_t* wire2 = nullptr;
  REQUIRE(ldns_pkt2wire(&wire2, q.get(), &len) == LDNS_STATUS_OK);
  cni::dns::MallocPtr<uint8_t> own2(wire2);
  CHECK(rcode(answer_query(w.index, ip("10.1.0.2"), wire2, len, Transport::kUdp, w.host, w.rng)) ==
        LDNS_RCODE_NOTIMPL);
  // SERVFAIL for a failed forward keeps the question and the id.
  auto fail = cni::dns::error_reply(wire2, len, LDNS_RCODE_SERVFAIL, Transport::kUdp);
  ldns_pkt* p = nullptr;
  REQUIRE(ldns_wire2pkt(&p, fail.data(), fail.size()) == LDNS_STATUS_OK);
  PktPtr fp(p);
  CHECK(ldns_pkt_get_rcode(fp.get()) == LDNS_RCODE_SERVFAIL);
  CHECK(ldns_pkt_id(fp.get()) == ldns_pkt_id(q.get()));
  CHECK(ldns_pkt_qdcount(fp.get()) == 1);
}

TEST_CASE("dns answer: the reply cache replays exact replies with the new ID") {
  World w;
  cni::dns::ReplyCache cache;
  auto query = [](const char* name, uint16_t id) {
    PktPtr q(ldns_pkt_query_new(ldns_dname_new_frm_str(name), LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN,
                                LDNS_RD));
    ldns_pkt_set_id(q.get(), id);
    uint8_t* wire = nullptr;
    size_t len = 0;
    REQUIRE(ldns_pkt2wire(&wire, q.get(), &len) == LDNS_STATUS_OK);
    std::vector<uint8_t> out(wire, wire + len);
    std::free(wire);
    return out;
  };
  auto ask = [&](const char* from, const std::vector<uint8_t>& q) {
    return answer_query(w.index, ip(from), q.data(), q.size(), Transport::kUdp, w.host, w.rng,
                        &cache);
  };
  auto first = ask("10.1.0.3", query("web1", 1));
  CHECK(cache.size() == 1);
  auto second = ask("10.1.0.3", query("web1", 2));
  CHECK(cache.size() == 1);
  CHECK(ldns_pkt_id(parse(second).get()) == 2);
  CHECK(std::equal(first.reply.begin() + 2, first.reply.end(), second.reply.begin() + 2));
  // Another scope is another entry, with its own answer.
  ask("10.1.0.2", query("me", 3));
  CHECK(ask("10.1.0.3", query("me", 4)).kind == Decision::Kind::kForward);
  // Shuffled answers and forwards are never cached.
  size_t before = cache.size();
  std::set<std::vector<std::string>> orders;
  for (uint16_t i = 0; i < 40; ++i) orders.insert(answers(ask("10.1.0.4", query("svc", 4711))));
  CHECK(orders.size() == 2);
  CHECK(ask("10.1.0.3", query("example.com", 5)).kind == Decision::Kind::kForward);
  CHECK(cache.size() == before);
}

namespace {

std::vector<uint8_t> to_bytes(const ldns_pkt* p) {
  uint8_t* wire = nullptr;
  size_t len = 0;
  REQUIRE(ldns_pkt2wire(&wire, p, &len) == LDNS_STATUS_OK);
  cni::dns::MallocPtr<uint8_t> own(wire);
  return {wire, wire + len};
}

// A server's reply to `q`: `count` A records for `name`.
PktPtr upstream_answer(const ldns_pkt* q, const char* name, int count) {
  PktPtr r(ldns_pkt_new());
  ldns_pkt_set_id(r.get(), ldns_pkt_id(q));
  ldns_pkt_set_qr(r.get(), true);
  ldns_pkt_set_rd(r.get(), true);
  ldns_pkt_set_ra(r.get(), true);
  ldns_rr* question = ldns_rr_new();
  ldns_rr_set_question(question, true);
  ldns_rr_set_owner(question, ldns_dname_new_frm_str(name));
  ldns_rr_set_type(question, LDNS_RR_TYPE_A);
  ldns_rr_set_class(question, LDNS_RR_CLASS_IN);
  ldns_pkt_push_rr(r.get(), LDNS_SECTION_QUESTION, question);
  for (int i = 0; i < count; ++i) {
    ldns_rr* rr = nullptr;
    std::string text = std::string(name) + " 60 IN A 192.0.2." + std::to_string(1 + i % 250);
    REQUIRE(ldns_rr_new_frm_str(&rr, text.c_str(), 0, nullptr, nullptr) == LDNS_STATUS_OK);
    ldns_pkt_push_rr(r.get(), LDNS_SECTION_ANSWER, rr);
  }
  return r;
}

}  // namespace

TEST_CASE("dns answer: an upstream's reply is checked against the query and fitted to the client") {
  using cni::dns::upstream_reply;
  PktPtr q(ldns_pkt_query_new(ldns_dname_new_frm_str("who.example."), LDNS_RR_TYPE_A,
                              LDNS_RR_CLASS_IN, LDNS_RD));
  ldns_pkt_set_id(q.get(), 77);
  auto query = to_bytes(q.get());
  auto check = [&](const std::vector<uint8_t>& reply, Transport t = Transport::kUdp) {
    return upstream_reply(query.data(), query.size(), reply.data(), reply.size(), t);
  };
  // A fitting reply passes verbatim, whatever the case of its question (DNS 0x20).
  auto small = to_bytes(upstream_answer(q.get(), "WHO.example.", 2).get());
  CHECK(check(small) == small);
  // Too large for a client without EDNS0: the question alone, TC set; over TCP, all of it.
  auto big = to_bytes(upstream_answer(q.get(), "who.example.", 200).get());
  REQUIRE(big.size() > 3000);
  auto fit = check(big);
  REQUIRE(fit);
  CHECK(fit->size() <= 512);
  ldns_pkt* p = nullptr;
  REQUIRE(ldns_wire2pkt(&p, fit->data(), fit->size()) == LDNS_STATUS_OK);
  PktPtr fp(p);
  CHECK(ldns_pkt_tc(fp.get()));
  CHECK(ldns_pkt_id(fp.get()) == 77);
  CHECK(ldns_pkt_qdcount(fp.get()) == 1);
  CHECK(ldns_pkt_ancount(fp.get()) == 0);
  CHECK(check(big, Transport::kTcp) == big);
  // With EDNS0 1232 the limit is the client's.
  PktPtr q2(ldns_pkt_clone(q.get()));
  ldns_pkt_set_edns_udp_size(q2.get(), 1232);
  auto query2 = to_bytes(q2.get());
  auto fit2 = upstream_reply(query2.data(), query2.size(), big.data(), big.size(), Transport::kUdp);
  REQUIRE(fit2);
  CHECK(fit2->size() <= 1232);
  // Not a reply to this query: garbage with its ID, no QR, another question, another type.
  std::vector<uint8_t> garbage = {0, 77, 0x81, 0x80, 0, 1, 0, 5, 0xff, 0xff, 0xff, 0xff, 3, 'a'};
  CHECK(!check(garbage));
  CHECK(!check({0, 77, 0x81}));
  auto no_qr = upstream_answer(q.get(), "who.example.", 1);
  ldns_pkt_set_qr(no_qr.get(), false);
  CHECK(!check(to_bytes(no_qr.get())));
  CHECK(!check(to_bytes(upstream_answer(q.get(), "other.example.", 1).get())));
  auto aaaa = upstream_answer(q.get(), "who.example.", 0);
  ldns_rr_set_type(ldns_rr_list_rr(ldns_pkt_question(aaaa.get()), 0), LDNS_RR_TYPE_AAAA);
  CHECK(!check(to_bytes(aaaa.get())));
  // An error may leave the question out; an answer may not.
  auto formerr = upstream_answer(q.get(), "who.example.", 0);
  ldns_rr_list_deep_free(ldns_pkt_question(formerr.get()));
  ldns_pkt_set_question(formerr.get(), ldns_rr_list_new());
  ldns_pkt_set_qdcount(formerr.get(), 0);
  auto noerror_without_question = to_bytes(formerr.get());
  CHECK(!check(noerror_without_question));
  ldns_pkt_set_rcode(formerr.get(), LDNS_RCODE_FORMERR);
  CHECK(check(to_bytes(formerr.get())));
}
