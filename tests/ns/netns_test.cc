#include "common/netns.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
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
  CHECK(error_code_of("/tmp") == cni::kErrInvalidNetns);               // a directory
}

TEST_CASE("NetnsFd: a FIFO is refused at once, never opened for reading (which blocks)") {
  const std::string fifo = "/tmp/" + tnst::prefix() + "-fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  // Before the O_PATH check this open() waited for a writer forever.
  CHECK(error_code_of(fifo) == cni::kErrInvalidNetns);
  CHECK_THROWS_AS(cni::NetnsFd::open_if_exists(fifo), cni::Error);
  CHECK_THROWS_AS(cni::is_current_netns(fifo), cni::Error);
  unlink(fifo.c_str());
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

  // The path survives moves (and so open_if_exists' optional): errors name it.
  CHECK(b->path() == ns.path());
  cni::NetnsFd moved = std::move(a);
  CHECK(moved.fd() >= 0);
  CHECK(moved.path() == ns.path());
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
