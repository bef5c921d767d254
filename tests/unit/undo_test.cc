#include "common/undo.h"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

TEST_CASE("Rollback: steps run newest first unless committed, past a failing step") {
  std::vector<std::string> ran;
  {
    cni::Rollback r;
    r.add("one", [&] { ran.push_back("one"); });
    r.add("two", [&] {
      ran.push_back("two");
      throw cni::Error(cni::kErrIo, "two broke");
    });
    r.add("three", [&] { ran.push_back("three"); });
  }
  CHECK(ran == std::vector<std::string>{"three", "two", "one"});

  ran.clear();
  {
    cni::Rollback r;
    r.add("one", [&] { ran.push_back("one"); });
    r.commit();
  }
  CHECK(ran.empty());

  // run(): undone now, and not again at destruction; a step added after it is still undone.
  ran.clear();
  {
    cni::Rollback r;
    r.add("one", [&] { ran.push_back("one"); });
    r.run();
    CHECK(ran == std::vector<std::string>{"one"});
    r.add("two", [&] { ran.push_back("two"); });
  }
  CHECK(ran == std::vector<std::string>{"one", "two"});

  // Unwinding from the failure it undoes.
  ran.clear();
  CHECK_THROWS_WITH_AS(
      [&] {
        cni::Rollback r;
        r.add("one", [&] { ran.push_back("one"); });
        throw cni::Error(cni::kErrInternal, "step two failed");
      }(),
      "step two failed", cni::Error);
  CHECK(ran == std::vector<std::string>{"one"});
}

TEST_CASE("ErrorList: every step is tried; raise reports the first code and every message") {
  cni::ErrorList none;
  CHECK(none.attempt("fine", [] {}));
  CHECK(none.empty());
  CHECK_NOTHROW(none.raise());
  CHECK_NOTHROW(none.raise("GC failed"));

  cni::ErrorList one;
  CHECK_FALSE(one.attempt("a", [] { throw cni::Error(cni::kErrTryAgainLater, "busy", "nft"); }));
  try {
    one.raise();
    FAIL("raise() did not throw");
  } catch (const cni::Error& e) {  // the only failure comes back as it was
    CHECK(e.code() == cni::kErrTryAgainLater);
    CHECK(e.msg() == "busy");
    CHECK(e.details() == "nft");
  }

  cni::ErrorList several;
  int ran = 0;
  several.attempt("a", [&] {
    ++ran;
    throw cni::Error(cni::kErrIo, "first", "disk");
  });
  several.attempt("b", [&] { ++ran; });
  several.attempt("c", [&] {
    ++ran;
    throw std::runtime_error("plain");
  });
  CHECK(ran == 3);
  REQUIRE(several.errors().size() == 2);
  CHECK(several.errors()[1].code() == cni::kErrInternal);
  CHECK(several.joined() == "first: disk; c failed: plain");
  try {
    several.raise();
    FAIL("raise() did not throw");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrIo);
    CHECK(e.msg() == "first");
    CHECK(e.details() == "first: disk; c failed: plain");
  }
  try {
    several.raise("GC failed");
    FAIL("raise(msg) did not throw");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrIo);
    CHECK(e.msg() == "GC failed");
    CHECK(e.details() == "first: disk; c failed: plain");
  }
}
