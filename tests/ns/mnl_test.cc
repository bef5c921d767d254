// The one netlink receive loop (common/mnl.h) against a real kernel: callbacks that throw,
// interrupted dumps, and the socket staying usable after both.
#include "common/mnl.h"

#include <doctest/doctest.h>
#include <libnftnl/common.h>
#include <libnftnl/gen.h>
#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>

#include "common/netns.h"
#include "common/nft.h"
#include "tests/ns/alloc_fault.h"
#include "tests/ns/fixture.h"

// tests/ns/alloc_fault.h: the one replacement of the global operator new in this binary.
namespace {
thread_local long fail_after = -1;
}  // namespace

void tnst::fail_allocation_after(long n) { fail_after = n; }
void tnst::allocations_succeed() { fail_after = -1; }

void* operator new(size_t n) {
  if (fail_after == 0) {
    fail_after = -1;
    throw std::bad_alloc();
  }
  if (fail_after > 0) --fail_after;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

using cni::NetnsGuard;
using tnst::table_name;
using tnst::TestNetns;
namespace nft = cni::nft;
using nft::Family;

namespace {

// A set large enough that its dump takes several messages and several recv() calls.
void make_big_set(const std::string& t, uint32_t n) {
  std::vector<nft::Element> elements;
  for (uint32_t i = 0; i < n; ++i) {
    elements.push_back({.key = nft::be32(0x0a000000 + i)});
  }
  nft::run([&](nft::NftTransaction& tx) {
    tx.add_table(Family::kIpv4, t);
    tx.add_set(Family::kIpv4, t, {.name = "s", .key = {nft::kTypeIpv4Addr}});
    tx.add_elements(Family::kIpv4, t, "s", elements);
  });
}

}  // namespace

TEST_CASE("nft: an allocation failure while a dump is parsed leaves the transaction usable") {
  TestNetns ns("mnlalloc");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("alloc");
  make_big_set(t, 3000);

  nft::NftTransaction tx = nft::NftTransaction::open();
  // The 50th allocation of the read falls in the element callback, inside the first part of
  // the dump: the failure must come out as the C++ exception it is...
  tnst::fail_allocation_after(50);
  CHECK_THROWS_AS(tx.list_elements(Family::kIpv4, t, "s"), std::bad_alloc);
  tnst::allocations_succeed();
  // ...and the rest of that dump must have been read, or this answer would be mixed with it.
  auto again = tx.list_elements(Family::kIpv4, t, "s");
  REQUIRE(again.has_value());
  CHECK(again->size() == 3000);
  CHECK(tx.table_exists(Family::kIpv4, t));
}

namespace {

// GETSETELEM dump of set `s` of ip table `t`.
const nlmsghdr* dump_request(char* buf, cni::mnl::Socket& sock, const std::string& t) {
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, NFPROTO_IPV4, NLM_F_DUMP, sock.next_seq());
  nftnl_set* s = nftnl_set_alloc();
  nftnl_set_set_str(s, NFTNL_SET_TABLE, t.c_str());
  nftnl_set_set_str(s, NFTNL_SET_NAME, "s");
  nftnl_set_elems_nlmsg_build_payload(nlh, s);
  nftnl_set_free(s);
  return nlh;
}

const nlmsghdr* getgen_request(char* buf, cni::mnl::Socket& sock) {
  return nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, sock.next_seq());
}

struct Thrown {};

}  // namespace

TEST_CASE("mnl: a callback's exception comes out after the whole answer is read") {
  TestNetns ns("mnlthrow");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("throw");
  make_big_set(t, 3000);
  cni::mnl::Socket sock = cni::mnl::Socket::netfilter();

  char buf[MNL_SOCKET_BUFFER_SIZE];
  int calls = 0;
  CHECK_THROWS_AS(sock.talk(dump_request(buf, sock, t),
                            [&](const nlmsghdr*) {
                              ++calls;
                              throw Thrown{};
                            }),
                  Thrown);
  CHECK(calls == 1);  // no message after the one that threw

  // The socket answers the next requests, not with what was left of the dump.
  int gens = 0;
  CHECK(sock.talk(getgen_request(buf, sock), [&](const nlmsghdr*) { ++gens; }) == 0);
  CHECK(gens == 1);
  int parts = 0;
  CHECK(sock.talk(dump_request(buf, sock, t), [&](const nlmsghdr*) { ++parts; }) == 0);
  CHECK(parts > 1);  // the dump really spans several messages
}

TEST_CASE("mnl: a dump that a commit interrupts is read to its end and reported as EINTR") {
  TestNetns ns("mnlintr");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("intr");
  nft::run([&](nft::NftTransaction& tx) {
    tx.add_table(Family::kIpv4, t);
    tx.add_chain(Family::kIpv4, t, {.name = "c"});
    for (int i = 0; i < 1000; ++i) {
      tx.add_rule(nft::Rule(Family::kIpv4, t, "c").counter().comment("rule " + std::to_string(i)));
    }
  });
  cni::mnl::Socket sock = cni::mnl::Socket::netfilter();

  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, NFPROTO_IPV4, NLM_F_DUMP, sock.next_seq());
  int calls = 0;
  int err = sock.talk(nlh, [&](const nlmsghdr*) {
    if (calls++ == 0) {
      // A commit between two parts of the dump: the kernel marks the parts after it.
      nft::NftTransaction other = nft::NftTransaction::open();
      other.add_chain(Family::kIpv4, t, {.name = "meanwhile"});
      other.commit();
    }
  });
  CHECK(err == -EINTR);
  CHECK(calls < 1000);  // nothing of the interrupted dump after the mark
  CHECK(sock.talk(getgen_request(buf, sock)) == 0);
  // nft's reads repeat an interrupted dump: every rule, once.
  nft::NftTransaction tx(sock);
  CHECK(tx.list_rules(Family::kIpv4, t, "c")->size() == 1000);
}

TEST_CASE("mnl: release_detached hands the last close to a process nobody waits for") {
  TestNetns ns("mnldetach");
  NetnsGuard guard(ns.fd());
  const std::string t = table_name("detach");
  make_big_set(t, 10);
  cni::mnl::Socket sock = cni::mnl::Socket::netfilter();
  // A commit that deletes something: its socket's last release is the one that waits.
  nft::run(sock, [&](nft::NftTransaction& tx) {
    tx.delete_elements(Family::kIpv4, t, "s", {{.key = nft::be32(0x0a000000)}});
  });
  struct stat st {};
  REQUIRE(::fstat(sock.fd(), &st) == 0);
  sock.release_detached();
  CHECK(sock.fd() < 0);
  // The middle process was reaped here, and the grandchild is not this process's child: no
  // zombie of ours is left, now or once the grandchild is gone.
  CHECK(tnst::zombie_children() == 0);
  // The socket is released for good, by the grandchild, soon.
  bool held = true;
  for (int i = 0; i < 500 && held; ++i) {
    held = tnst::fd_target_held("socket:[" + std::to_string(st.st_ino) + "]");
    if (held) ::usleep(10'000);
  }
  CHECK_FALSE(held);
  CHECK(tnst::zombie_children() == 0);
  // The commit took effect before the release.
  nft::NftTransaction tx = nft::NftTransaction::open();
  auto left = tx.list_elements(Family::kIpv4, t, "s");
  REQUIRE(left.has_value());
  CHECK(left->size() == 9);
}
