// Runs last (doctest orders by file): nothing the namespace tests made may outlive them.
#include <doctest/doctest.h>

#include "tests/ns/fixture.h"

TEST_CASE("namespace tests leave no netns, link or nftables table behind") {
  const std::string p = tnst::prefix();
  CHECK(tnst::sh("ip netns list").out.find(p) == std::string::npos);
  CHECK(tnst::sh("ls /run/netns 2>/dev/null").out.find(p) == std::string::npos);
  const std::string links = tnst::sh("ip -br link").out;
  for (const char* name : {"tbr", "tveth", "tvv", "tdummy", "eth1", "tvx", "tund"}) {
    CHECK_MESSAGE(links.find(name) == std::string::npos, name);
  }
  CHECK(tnst::sh("nft list tables").out.find(p) == std::string::npos);
}
