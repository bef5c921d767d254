// The keys every tether plugin that keeps state shares (nftTable, stateDir) are read by one
// helper in common/netconf: the same values pass or fail in every plugin, with the same message.
#include <doctest/doctest.h>

#include <string>
#include <utility>

#include "common/error.h"
#include "common/netconf.h"
#include "plugins/bridge/config.h"
#include "plugins/dns-sidecar/config.h"
#include "plugins/portmap/config.h"

namespace {

std::string conf(const std::string& type, const std::string& extra) {
  return R"({"cniVersion":"1.0.0","name":"net1","type":")" + type + R"(",)" + extra + "}";
}

// code and details of the error, {0, ""} when it parses.
template <class F>
std::pair<int, std::string> outcome(F parse) {
  try {
    parse();
    return {0, ""};
  } catch (const cni::Error& e) {
    return {e.code(), e.msg() + ": " + e.details()};
  }
}

std::pair<int, std::string> bridge(const std::string& extra) {
  return outcome([&] {
    cni::bridge::Config::parse(cni::NetConf::parse(conf("bridge", extra)), cni::CniArgs{});
  });
}

std::pair<int, std::string> portmap(const std::string& extra) {
  return outcome([&] { cni::portmap::Config::parse(cni::NetConf::parse(conf("portmap", extra))); });
}

std::pair<int, std::string> dns(const std::string& extra) {
  return outcome([&] {
    cni::dns::Config::parse(cni::NetConf::parse(conf("dns-sidecar", extra)), cni::CniArgs{});
  });
}

}  // namespace

TEST_CASE("nftTable: bridge and portmap accept and reject the same names, up to the kernel's 255") {
  const std::string longest = "t" + std::string(cni::kNftNameMax - 1, 'x');
  for (const std::string& good : {std::string("t"), std::string("t-1.x_Y"), longest}) {
    CAPTURE(good);
    const std::string key = R"("nftTable":")" + good + R"(")";
    CHECK(bridge(key).first == 0);
    CHECK(portmap(key).first == 0);
  }
  for (const std::string& bad : {std::string(""), std::string("1abc"), std::string("a b"),
                                 std::string("a/b"), longest + "x"}) {
    CAPTURE(bad);
    const std::string key = R"("nftTable":")" + bad + R"(")";
    const auto b = bridge(key);
    CHECK(b.first == cni::kErrInvalidConfig);
    CHECK(b.second.find("nftTable") != std::string::npos);
    CHECK(b == portmap(key));
  }
}

TEST_CASE("stateDir: bridge, portmap and dns-sidecar reject the same paths with one message") {
  for (const char* bad : {"", "relative/dir", "./x"}) {
    CAPTURE(bad);
    const std::string key = R"("stateDir":")" + std::string(bad) + R"(")";
    const auto b = bridge(key);
    CHECK(b.first == cni::kErrInvalidConfig);
    CHECK(b.second == "invalid network configuration: stateDir: must be an absolute path, got \"" +
                          std::string(bad) + "\"");
    CHECK(b == portmap(key));
    CHECK(b == dns(key));
  }
  CHECK(bridge(R"("stateDir":"/tmp/st/")").first == 0);
  CHECK(portmap(R"("stateDir":"/tmp/st/")").first == 0);
  CHECK(dns(R"("stateDir":"/tmp/st/")").first == 0);
}
