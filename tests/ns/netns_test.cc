#include "common/netns.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <stdexcept>

#include "common/error.h"
#include "tests/ns/fixture.h"

using tnst::TestNetns;

namespace {

int error_code_of(const std::string& path) {
  try {
    cni::NetnsFd::open(path);
  } catch (const cni::Error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    return e.code();
  }
  return 0;
}

}  // namespace

TEST_CASE("NetnsFd rejects paths that are not network namespaces with code 8") {
  char tmpl[] = "/tmp/tnst-netns-XXXXXX";
  int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  CHECK(error_code_of(tmpl) == cni::kErrInvalidNetns);
  CHECK_THROWS_AS(cni::NetnsFd::open_if_exists(tmpl), cni::Error);
  unlink(tmpl);

  CHECK(error_code_of("/dev/null") == cni::kErrInvalidNetns);
  CHECK(error_code_of("/proc/self/ns/uts") == cni::kErrInvalidNetns);  // nsfs, not net
}

TEST_CASE("NetnsFd: a missing path is nullopt for DEL and code 8 for ADD") {
  const std::string missing = "/run/netns/" + tnst::prefix() + "-missing";
  CHECK_FALSE(cni::NetnsFd::open_if_exists(missing).has_value());
  CHECK(error_code_of(missing) == cni::kErrInvalidNetns);
}

TEST_CASE("NetnsFd accepts bind-mounted and /proc netns files") {
  TestNetns ns("fd");
  auto a = cni::NetnsFd::open(ns.path());
  auto b = cni::NetnsFd::open_if_exists(ns.path());
  REQUIRE(b.has_value());
  CHECK(a.same_as(*b));
  CHECK_FALSE(a.same_as(cni::NetnsFd::current()));
  CHECK(cni::NetnsFd::open("/proc/self/ns/net").same_as(cni::NetnsFd::current()));
  CHECK(cni::is_current_netns("/proc/self/ns/net"));
  CHECK_FALSE(cni::is_current_netns(ns.path()));

  cni::NetnsFd moved = std::move(a);
  CHECK(moved.fd() >= 0);
  CHECK(a.fd() == -1);  // NOLINT(bugprone-use-after-move): moved-from state is part of the contract
}

TEST_CASE("NetnsGuard enters the target and restores the original netns") {
  TestNetns ns("guard");
  const cni::NetnsFd host = cni::NetnsFd::current();
  {
    cni::NetnsGuard guard(ns.fd());
    CHECK(cni::is_current_netns(ns.path()));
    CHECK_FALSE(cni::NetnsFd::current().same_as(host));
  }
  CHECK(cni::NetnsFd::current().same_as(host));

  int v = cni::in_netns(ns.fd(), [&] { return cni::is_current_netns(ns.path()) ? 42 : 0; });
  CHECK(v == 42);
  CHECK_THROWS_AS(cni::in_netns(ns.fd(), []() -> int { throw std::runtime_error("boom"); }),
                  std::runtime_error);
  CHECK(cni::NetnsFd::current().same_as(host));
}
