#include <doctest/doctest.h>

#include "common/error.h"
#include "plugins/portmap/config.h"

using cni::json;
using cni::portmap::Condition;
using cni::portmap::Config;
using cni::portmap::Proto;

namespace {

Config parse(const std::string& text) { return Config::parse(cni::NetConf::parse(text)); }

// The error code and details of parsing `text`, or code 0 when it parses.
std::pair<int, std::string> error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const cni::Error& e) {
    return {e.code(), e.details()};
  }
  return {0, ""};
}

std::string with(const std::string& keys) {
  return R"({"cniVersion":"1.0.0","name":"n","type":"portmap")" + (keys.empty() ? "" : "," + keys) +
         "}";
}

std::string mappings(const std::string& list) {
  return with(R"("runtimeConfig":{"portMappings":[)" + list + "]}");
}

}  // namespace

TEST_CASE("portmap config: defaults are the reference's") {
  Config c = parse(with(""));
  CHECK(c.snat);
  CHECK_FALSE(c.masq_all);
  CHECK(c.mark_masq_bit == 13);
  CHECK(c.table == "tether-portmap");
  CHECK(c.state_dir == "/run/cni/tether-portmap");
  CHECK(c.mappings.empty());
  CHECK(c.allowed_sources.empty());
  CHECK(c.conditions_v4.empty());
}

TEST_CASE("portmap config: containerd's Go-cased mapping keys") {
  Config c = parse(mappings(R"({"HostPort":8080,"ContainerPort":80,"Protocol":"TCP","HostIP":""},
                  {"hostPort":53,"containerPort":5353,"protocol":"udp,tcp","hostIP":"::ffff:10.1.2.3"},
                  {"hostPort":9000,"containerPort":90,"range":3,"sourceRanges":["10.0.0.1","fd00::/8"]})"));
  REQUIRE(c.mappings.size() == 3);
  CHECK(c.mappings[0].host_port == 8080);
  CHECK(c.mappings[0].container_port == 80);
  CHECK(c.mappings[0].protocols == std::vector<Proto>{Proto::kTcp});
  CHECK_FALSE(c.mappings[0].host_ip);
  CHECK(c.mappings[1].protocols == std::vector<Proto>{Proto::kUdp, Proto::kTcp});
  REQUIRE(c.mappings[1].host_ip);
  CHECK(c.mappings[1].host_ip->is_v4());  // v4-mapped counts as IPv4, as Go's To4()
  CHECK(c.mappings[1].host_ip->str() == "10.1.2.3");
  CHECK(c.mappings[2].protocols == std::vector<Proto>{Proto::kTcp});  // missing: tcp
  CHECK(c.mappings[2].range == 3);
  REQUIRE(c.mappings[2].source_ranges.size() == 2);
  CHECK(c.mappings[2].source_ranges[0].str() == "10.0.0.1/32");
  CHECK(c.mappings[2].source_ranges[1].str() == "fd00::/8");
}

TEST_CASE("portmap config: plugin keys") {
  Config c = parse(with(
      R"("snat":false,"masqAll":true,"markMasqBit":0,"backend":"nftables","nftTable":"t-1.x",
         "stateDir":"/tmp/pm","allowedSources":["10.1.2.3/16"],
         "conditionsV4":["ip daddr != 10.0.0.0/8", "iifname", "eth0"],
         "conditionsV6":["ip6","saddr","==","fd00::1"])"));
  CHECK_FALSE(c.snat);
  CHECK(c.masq_all);
  CHECK(c.mark_masq_bit == 0);
  CHECK(c.table == "t-1.x");
  CHECK(c.state_dir == "/tmp/pm");
  REQUIRE(c.allowed_sources.size() == 1);
  CHECK(c.allowed_sources[0].str() == "10.1.0.0/16");  // masked: an interval starts there
  REQUIRE(c.conditions_v4.size() == 2);
  CHECK(c.conditions_v4[0].str(false) == "ip daddr != 10.0.0.0/8");
  CHECK(c.conditions_v4[1].str(false) == "iifname \"eth0\"");
  REQUIRE(c.conditions_v6.size() == 1);
  CHECK(c.conditions_v6[0].kind == Condition::Kind::kSaddr);
  CHECK_FALSE(c.conditions_v6[0].negate);
  CHECK(c.conditions_v6[0].str(true) == "ip6 saddr fd00::1/128");
}

TEST_CASE("portmap config: bad values are code 7 naming the key") {
  struct Case {
    std::string text;
    int code;
    std::string key;
  };
  const Case cases[] = {
      {mappings(R"({"hostPort":0,"containerPort":80})"), 7,
       "runtimeConfig.portMappings[0].hostPort"},
      {mappings(R"({"hostPort":1,"containerPort":80},{"hostPort":70000,"containerPort":80})"), 7,
       "runtimeConfig.portMappings[1].hostPort"},
      {mappings(R"({"hostPort":"80","containerPort":80})"), 7,
       "runtimeConfig.portMappings[0].hostPort"},
      {mappings(R"({"hostPort":80})"), 7, "runtimeConfig.portMappings[0].containerPort"},
      {mappings(R"({"hostPort":80,"containerPort":80,"protocol":"icmp"})"), 7,
       "runtimeConfig.portMappings[0].protocol"},
      {mappings(R"({"hostPort":80,"containerPort":80,"hostIP":"localhost"})"), 7,
       "runtimeConfig.portMappings[0].hostIP"},
      {mappings(R"({"hostPort":65535,"containerPort":80,"range":2})"), 7,
       "runtimeConfig.portMappings[0].range"},
      {mappings(R"({"hostPort":80,"containerPort":80,"range":0})"), 7,
       "runtimeConfig.portMappings[0].range"},
      {mappings(R"({"hostPort":80,"containerPort":80,"sourceRanges":["x"]})"), 7,
       "runtimeConfig.portMappings[0].sourceRanges[0]"},
      {mappings(R"(5)"), 7, "runtimeConfig.portMappings[0]"},
      {with(R"("runtimeConfig":{"portMappings":{}})"), 7, "runtimeConfig.portMappings"},
      {with(R"("snat":"yes")"), 7, "snat"},
      {with(R"("markMasqBit":32)"), 7, "markMasqBit"},
      {with(R"("markMasqBit":1,"externalSetMarkChain":"KUBE-MARK-MASQ")"), 7,
       "externalSetMarkChain"},
      {with(R"("externalSetMarkChain":"KUBE-MARK-MASQ")"), 2, "externalSetMarkChain"},
      {with(R"("backend":"iptables")"), 2, "backend"},
      {with(R"("backend":"ebpf")"), 7, "backend"},
      {with(R"("nftTable":"1bad name")"), 7, "nftTable"},
      {with(R"("stateDir":"relative")"), 7, "stateDir"},
      {with(R"("allowedSources":["10.0.0.0/8","10.0.0.300"])"), 7, "allowedSources[1]"},
      {with(R"("conditionsV4":["-d","1.2.3.4","-j","ACCEPT"])"), 7, "conditionsV4"},
      {with(R"("conditionsV4":["! -s 1.2.3.4"])"), 7, "conditionsV4"},
      {with(R"("conditionsV4":["tcp dport 22"])"), 2, "conditionsV4"},
      {with(R"("conditionsV4":["ip6 daddr ::1"])"), 2, "conditionsV4"},
      {with(R"("conditionsV6":["ip6 daddr 10.0.0.1"])"), 7, "conditionsV6"},
      {with(R"("conditionsV6":["ip6 daddr"])"), 2, "conditionsV6"},
      {with(R"("conditionsV4":"ip daddr 1.2.3.4")"), 7, "conditionsV4"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto [code, details] = error_of(c.text);
    CHECK(code == c.code);
    CHECK(details.rfind(c.key, 0) == 0);
  }
}

TEST_CASE("portmap config: iptables-syntax conditions get a clear message") {
  auto [code, details] = error_of(with(R"("conditionsV4":["-d 1.2.3.4"])"));
  CHECK(code == cni::kErrInvalidConfig);
  CHECK(details.find("iptables-syntax") != std::string::npos);
  CHECK(details.find("nft syntax") != std::string::npos);
}

TEST_CASE("portmap config: container addresses come from the sandbox interface") {
  json prev = json::parse(R"({"cniVersion":"1.0.0",
      "interfaces":[{"name":"br0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/x"},
                    {"name":"eth1","sandbox":"/run/netns/x"}],
      "ips":[{"address":"10.1.0.1/24","interface":0},
             {"address":"10.9.0.5/24","interface":3},
             {"address":"10.1.0.5/24","interface":2},
             {"address":"10.1.0.6/24","interface":2},
             {"address":"fd00::5/64"}]})");
  cni::Result r = cni::Result::from_json(prev);
  auto a = cni::portmap::container_addresses(r, "eth0");
  REQUIRE(a.v4);
  CHECK(a.v4->str() == "10.1.0.5/24");  // the first of eth0; br0's and eth1's are skipped
  REQUIRE(a.v6);
  CHECK(a.v6->str() == "fd00::5/64");  // no interface index: taken, as in the reference
  auto none = cni::portmap::container_addresses(r, "eth9");
  CHECK_FALSE(none.v4);
  CHECK(none.v6);
}
