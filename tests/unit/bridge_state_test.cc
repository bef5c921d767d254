#include <doctest/doctest.h>

#include "common/error.h"
#include "common/netconf.h"
#include "plugins/bridge/bridge.h"
#include "plugins/bridge/state.h"

using cni::json;

namespace {

cni::bridge::Config config(const std::string& extra) {
  std::string text = R"({"cniVersion":"1.0.0","name":"n","type":"bridge")";
  if (!extra.empty()) text += "," + extra;
  return cni::bridge::Config::parse(cni::NetConf::parse(text + "}"), cni::CniArgs::parse(""));
}

cni::Result ipam_result(const std::string& text) {
  return cni::Result::from_json(json::parse(text));
}

}  // namespace

TEST_CASE("bridge state: JSON round trip, and a malformed file is a decode error") {
  cni::bridge::AttachmentState s;
  s.container_id = "abc";
  s.ifname = "eth0";
  s.bridge = "cni0";
  s.fw_ifaces = {"cni0", "cni0.7"};
  s.host_veth = "veth01020304";
  s.container_mac = "02:00:00:00:00:01";
  s.masq_ips = {"10.1.0.2", "fd00::2"};
  s.spoofchk = true;
  auto back = cni::bridge::AttachmentState::from_json(s.to_json());
  CHECK(back.to_json() == s.to_json());
  CHECK_THROWS_AS(cni::bridge::AttachmentState::from_json(json::parse(R"({"ifname":"x"})")),
                  cni::Error);
  CHECK_THROWS_AS(cni::bridge::AttachmentState::from_json(json::array()), cni::Error);
  // A link rule's numbers are checked, not truncated: port 65589 is not port 53.
  s.links = {{"10.1.0.2", "10.1.0.3", 6, 80}};
  CHECK(cni::bridge::AttachmentState::from_json(s.to_json()).to_json() == s.to_json());
  for (const char* bad : {R"({"src":"a","peer":"b","proto":6,"port":65616})",
                          R"({"src":"a","peer":"b","proto":262,"port":80})",
                          R"({"src":"a","peer":"b","proto":6,"port":-80})",
                          R"({"src":"a","peer":"b","proto":6})", R"("a")"}) {
    CAPTURE(bad);
    json broken = s.to_json();
    broken["links"] = json::array({json::parse(bad)});
    CHECK_THROWS_AS(cni::bridge::AttachmentState::from_json(broken), cni::Error);
  }
  CHECK(cni::bridge::state_store("/d").path({"n", "abc", "eth0"}) == "/d/n/abc:eth0.json");
}

TEST_CASE("bridge gateways: subnet+1 when IPAM gives none, default routes once per family") {
  cni::Result r = ipam_result(
      R"({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"},
          {"address":"fd00::5/64","gateway":"fd00::fe"}],
          "routes":[{"dst":"::/0","gw":"fd00::fe"}]})");
  auto gws = cni::bridge::calc_gateways(r, config(R"("isDefaultGateway":true)"));
  REQUIRE(gws.v4.size() == 1);
  CHECK(gws.v4[0].str() == "10.1.0.1/24");
  REQUIRE(gws.v6.size() == 1);
  CHECK(gws.v6[0].str() == "fd00::fe/64");
  CHECK(r.ips[0].gateway->str() == "10.1.0.1");
  CHECK(r.ips[0].interface == 2);
  CHECK(r.ips[1].interface == 2);
  REQUIRE(r.routes.size() == 2);  // IPAM's v6 default kept, one v4 default added
  CHECK(r.routes[1].dst.str() == "0.0.0.0/0");
  CHECK(r.routes[1].gw->str() == "10.1.0.1");
}

TEST_CASE("bridge gateways: without isGateway nothing is added") {
  cni::Result r = ipam_result(R"({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"}]})");
  auto gws = cni::bridge::calc_gateways(r, config(""));
  CHECK(gws.v4.empty());
  CHECK(gws.v6.empty());
  CHECK_FALSE(r.ips[0].gateway.has_value());
  CHECK(r.routes.empty());
  CHECK(r.ips[0].interface == 2);
}
