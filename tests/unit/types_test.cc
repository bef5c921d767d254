#include "common/types.h"

#include <doctest/doctest.h>

#include "common/error.h"

using cni::json;

namespace {

cni::Result sample() {
  cni::Result r;
  r.interfaces = {{"cni0", "0a:58:0a:01:00:01", std::nullopt, "", "", ""},
                  {"veth1", "0a:58:0a:01:00:02", std::nullopt, "", "", ""},
                  {"eth0", "0a:58:0a:01:00:03", 1400, "/run/netns/x", "", ""}};
  r.ips = {{*cni::Prefix::parse("10.1.0.5/16"), cni::IpAddr::parse("10.1.0.1"), 2},
           {*cni::Prefix::parse("fd00::5/64"), cni::IpAddr::parse("fd00::1"), 2}};
  cni::Route route;
  route.dst = *cni::Prefix::parse("0.0.0.0/0");
  route.gw = cni::IpAddr::parse("10.1.0.1");
  route.mtu = 1400;
  route.advmss = 1360;
  route.priority = 100;
  route.table = 10;
  route.scope = 0;
  r.routes = {route};
  r.dns.nameservers = {"10.1.0.1"};
  r.dns.domain = "example.test";
  r.dns.search = {"a.test"};
  r.dns.options = {"ndots:1"};
  return r;
}

}  // namespace

TEST_CASE("types: result round-trips in every supported version") {
  for (const auto& v : cni::supported_versions()) {
    CAPTURE(v);
    json j = sample().to_json(v);
    CHECK(j["cniVersion"] == v);
    bool legacy = cni::compare_versions(v, "1.0.0") < 0;
    CHECK(j["ips"][0].contains("version") == legacy);
    if (legacy) {
      CHECK(j["ips"][0]["version"] == "4");
      CHECK(j["ips"][1]["version"] == "6");
    }
    CHECK_FALSE(j["interfaces"][0].contains("sandbox"));
    CHECK(j["interfaces"][2]["sandbox"] == "/run/netns/x");
    cni::Result back = cni::Result::from_json(j);
    CHECK(back.to_json(v) == j);
    CHECK(back.ips[1].address.str() == "fd00::5/64");
    CHECK(back.routes[0].advmss == 1360);
    CHECK(back.dns.options == std::vector<std::string>{"ndots:1"});
  }
}

TEST_CASE("types: empty dns is still written, as the reference does") {
  cni::Result r;
  json j = r.to_json("1.0.0");
  CHECK(j == json{{"cniVersion", "1.0.0"}, {"dns", json::object()}});
}

TEST_CASE("types: IPAM results without interfaces and legacy ip4/ip6 results parse") {
  auto r = cni::Result::from_json(json::parse(
      R"({"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24","gateway":"10.0.0.1"}],
          "routes":[{"dst":"0.0.0.0/0"}],"dns":{}})"));
  CHECK(r.interfaces.empty());
  CHECK_FALSE(r.ips[0].interface);
  CHECK(r.ips[0].gateway->str() == "10.0.0.1");
  auto legacy = cni::Result::from_json(json::parse(
      R"({"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","gateway":"10.0.0.1","routes":[{"dst":"0.0.0.0/0"}]},
          "ip6":{"ip":"fd00::2/64"}})"));
  REQUIRE(legacy.ips.size() == 2);
  CHECK(legacy.ips[1].address.addr().str() == "fd00::2");
  CHECK(legacy.routes.size() == 1);
}

TEST_CASE("types: malformed results are decode errors naming the field") {
  const char* bad[] = {
      R"([])",
      R"({"ips":[{"address":"10.0.0.1"}]})",
      R"({"ips":[{"address":"10.0.0.1/24","gateway":"nope"}]})",
      R"({"ips":[{"address":"10.0.0.1/24","interface":3}]})",
      R"({"interfaces":[{"name":5}]})",
      R"({"routes":[{"dst":"0.0.0.0/0","mtu":"x"}]})",
      R"({"dns":{"search":[1]}})",
      R"({"ips":{}})",
      // The spec's one required interface member; portmap and dns-sidecar printed these back.
      R"({"interfaces":[{"mac":"aa:bb:cc:dd:ee:ff"}]})",
      R"({"interfaces":[{"name":""}]})",
      // get<int>() wrapped 2^32 to 0, which then passed the range check.
      R"({"interfaces":[{"name":"a"}],"ips":[{"address":"10.0.0.1/24","interface":4294967296}]})",
      R"({"routes":[{"dst":"0.0.0.0/0","mtu":-9999999999}]})",
  };
  for (const char* text : bad) {
    CAPTURE(text);
    try {
      cni::Result::from_json(json::parse(text));
      FAIL("accepted");
    } catch (const cni::Error& e) {
      CHECK(e.code() == cni::kErrDecode);
    }
  }
}

TEST_CASE("types: version comparison") {
  CHECK(cni::compare_versions("0.4.0", "1.0.0") < 0);
  CHECK(cni::compare_versions("1.1.0", "1.0.0") > 0);
  // Components longer than any integer saturate (no overflow: the sanitizer build runs this).
  CHECK(cni::compare_versions("1.0.99999999999999999999999999", "1.0.1") > 0);
  CHECK(cni::compare_versions("99999999999999999999999999.0", "99999999999999999999999999.0") == 0);
  CHECK(cni::compare_versions("1.0", "1.0.0") == 0);
  CHECK(cni::compare_versions("0.10.0", "0.9.0") > 0);
  CHECK(cni::is_supported_version("0.3.0"));
  CHECK_FALSE(cni::is_supported_version("0.2.0"));
}

TEST_CASE("types: container_interface finds the sandboxed one") {
  auto r = sample();
  CHECK(r.container_interface("eth0") == 2);
  CHECK_FALSE(r.container_interface("cni0"));
  CHECK_FALSE(r.container_interface("eth1"));
}
