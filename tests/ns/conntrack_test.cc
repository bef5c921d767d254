// portmap's conntrack flush against a real ctnetlink, through common/mnl's loop.
#include "plugins/portmap/conntrack.h"

#include <doctest/doctest.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <new>

#include "common/error.h"
#include "common/mnl.h"
#include "common/netns.h"
#include "common/nft.h"
#include "tests/ns/alloc_fault.h"
#include "tests/ns/fixture.h"

using cni::NetnsGuard;
using tnst::TestNetns;
namespace nft = cni::nft;

namespace {

// Conntrack only tracks a netns's packets once something there needs it: a ct match does.
void track_output(const std::string& t) {
  nft::run([&](nft::NftTransaction& tx) {
    tx.add_table(nft::Family::kInet, t);
    tx.add_chain(nft::Family::kInet, t,
                 {.name = "out", .hook = nft::Hook{NF_INET_LOCAL_OUT, 0, "filter", NF_ACCEPT}});
    tx.add_rule(
        nft::Rule(nft::Family::kInet, t, "out").ct_state(NF_CT_STATE_BIT(IP_CT_NEW)).counter());
  });
}

// One UDP packet from 127.0.0.1 to 127.0.0.1:port per source port: one conntrack entry each.
void udp_flows(uint16_t port, int count) {
  for (int i = 0; i < count; ++i) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == 1);
    close(fd);
  }
}

int entries(const TestNetns& ns, uint16_t port) {
  tnst::ShResult r = ns.exec("conntrack -L -p udp --dport " + std::to_string(port));
  int n = 0;
  for (char c : r.out) n += c == '\n';
  return n - 1;  // the summary line ("N flow entries have been shown")
}

}  // namespace

TEST_CASE("portmap conntrack: flushes a port's UDP entries and no others") {
  TestNetns ns("ctflush");
  NetnsGuard guard(ns.fd());
  track_output(tnst::prefix() + "_ct");
  udp_flows(5353, 3);
  udp_flows(5354, 2);
  REQUIRE(entries(ns, 5353) == 3);
  REQUIRE(entries(ns, 5354) == 2);

  cni::mnl::Socket sock = cni::mnl::Socket::netfilter();
  CHECK(cni::portmap::flush_udp_conntrack(
            sock, {{.family = 4, .port = 5353, .count = 1, .host_ip = std::nullopt}}) == 3);
  CHECK(entries(ns, 5353) == 0);
  CHECK(entries(ns, 5354) == 2);
  CHECK(cni::portmap::flush_udp_conntrack(
            sock, {{.family = 4, .port = 5353, .count = 1, .host_ip = std::nullopt}}) == 0);
}

TEST_CASE("portmap conntrack: a throw inside the dump callback leaves the socket usable") {
  TestNetns ns("ctthrow");
  NetnsGuard guard(ns.fd());
  track_output(tnst::prefix() + "_ct");
  cni::mnl::Socket sock = cni::mnl::Socket::netfilter();
  const std::vector<cni::portmap::FlushTarget> port = {
      {.family = 4, .port = 5353, .count = 1, .host_ip = std::nullopt}};

  // The dump callback allocates for each matching entry; with the allocations failing one by
  // one later, some attempt fails there, in the middle of the dump. Whatever fails must come out
  // as std::bad_alloc, and the same socket must then flush everything.
  int thrown = 0;
  for (long n = 0; n < 8; ++n) {
    udp_flows(5353, 4);
    tnst::fail_allocation_after(n);
    try {
      cni::portmap::flush_udp_conntrack(sock, port);
    } catch (const std::bad_alloc&) {
      ++thrown;
    }
    tnst::allocations_succeed();
    cni::portmap::flush_udp_conntrack(sock, port);
    CHECK(entries(ns, 5353) == 0);
  }
  CHECK(thrown > 0);
}
