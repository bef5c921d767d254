// The DNS daemon's query path: a packet in, the answer it would send (or its decision to drop
// or forward), for a small registry of three networks. The first input byte picks the source
// address (a container of each network, an unregistered source in a subnet, a stranger), the
// transport and whether the reply cache is in the path; the rest is the packet.
#include <algorithm>
#include <random>

#include "plugins/dns-sidecar/answer.h"
#include "plugins/dns-sidecar/ldns_ptr.h"  // ldns, included the one safe way
#include "plugins/dns-sidecar/registry.h"
#include "tests/fuzz/fuzz.h"
#include "tests/unit/dns_test_record.h"

namespace {

using cni::IpAddr;
using cni::dns::Decision;
using cni::dns::Record;

using cni::dns::test::rec;

struct World {
  World() {
    Record web1 = rec("a", "c1", "web1", {"10.1.0.2/24", "fd01::2/64"}, "10.1.0.1");
    web1.aliases = {"svc", "db"};
    web1.container_aliases = {"me", "backend=web2"};
    web1.upstreams = {"10.99.0.1"};
    Record web2 = rec("a", "c2", "web2", {"10.1.0.3/24"}, "10.1.0.1");
    web2.aliases = {"svc"};
    web2.net.ttl = 30;
    Record other = rec("b", "c3", "other", {"10.2.0.2/24"}, "10.2.0.1");
    Record internal = rec("i", "c5", "lonely", {"10.3.0.2/24"}, "10.3.0.1");
    internal.net.internal = true;
    for (auto* r : {&web1, &web2, &other, &internal}) reg.upsert(*r);
    index = cni::dns::Index::build(reg, 53);
  }
  cni::dns::Registry reg;
  cni::dns::Index index;
  std::vector<cni::dns::Upstream> host = {*cni::dns::parse_upstream("10.99.0.3")};
};

const char* const kSources[] = {"10.1.0.2", "fd01::2",   "10.1.0.3",  "10.2.0.2",
                                "10.3.0.2", "10.1.0.77", "192.0.2.1", "::1"};

void check_reply(const Decision& d, const uint8_t* q, size_t len, cni::dns::Transport t) {
  if (d.kind != Decision::Kind::kReply) return;
  tether_fuzz::require(d.reply.size() >= LDNS_HEADER_SIZE, "a reply has a header");
  tether_fuzz::require(d.reply.size() <= 65535, "a reply fits a DNS message");
  tether_fuzz::require(d.reply[0] == q[0] && d.reply[1] == q[1], "the reply has the query's ID");
  tether_fuzz::require(LDNS_QR_WIRE(d.reply.data()), "the reply is a response");
  ldns_pkt* p = nullptr;
  tether_fuzz::require(ldns_wire2pkt(&p, d.reply.data(), d.reply.size()) == LDNS_STATUS_OK,
                       "the reply parses");
  cni::dns::PktPtr reply(p);
  if (t == cni::dns::Transport::kUdp) {
    ldns_pkt* qp = nullptr;
    size_t limit = 512;
    if (ldns_wire2pkt(&qp, q, len) == LDNS_STATUS_OK) {
      cni::dns::PktPtr query(qp);
      if (ldns_pkt_edns(qp)) limit = std::max<size_t>(512, ldns_pkt_edns_udp_size(qp));
    }
    tether_fuzz::require(d.reply.size() <= limit, "a UDP reply fits the client's size");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  static World w;
  if (size < 1) return 0;
  uint8_t sel = data[0];
  const uint8_t* wire = data + 1;
  size_t len = size - 1;
  IpAddr source = *IpAddr::parse(kSources[sel & 7]);
  auto t = (sel & 8) ? cni::dns::Transport::kTcp : cni::dns::Transport::kUdp;
  std::minstd_rand rng(sel);
  if (sel & 16) {
    cni::dns::ReplyCache cache;
    Decision first = answer_query(w.index, source, wire, len, t, w.host, rng, &cache);
    check_reply(first, wire, len, t);
    Decision second = answer_query(w.index, source, wire, len, t, w.host, rng, &cache);
    check_reply(second, wire, len, t);
    tether_fuzz::require(first.kind == second.kind, "the cache decides as the index does");
  } else {
    Decision d = answer_query(w.index, source, wire, len, t, w.host, rng);
    check_reply(d, wire, len, t);
  }
  auto err = cni::dns::error_reply(wire, len, LDNS_RCODE_SERVFAIL, t);
  if (!err.empty()) {
    tether_fuzz::require(err.size() >= LDNS_HEADER_SIZE && err[0] == wire[0] && err[1] == wire[1],
                         "an error reply has the query's ID");
  }
  return 0;
}
