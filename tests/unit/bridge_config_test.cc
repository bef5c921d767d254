#include <doctest/doctest.h>

#include <algorithm>
#include <functional>

#include "common/error.h"
#include "common/mac.h"
#include "plugins/bridge/config.h"

using cni::json;
using cni::bridge::Config;
using cni::bridge::Firewall;

namespace {

Config parse(const std::string& extra, const std::string& cni_args = "") {
  std::string text = R"({"cniVersion":"1.1.0","name":"net1","type":"bridge")";
  if (!extra.empty()) text += "," + extra;
  text += "}";
  return Config::parse(cni::NetConf::parse(text), cni::CniArgs::parse(cni_args));
}

// The error's code and details, or code 0 when parse succeeded.
std::pair<int, std::string> error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const cni::Error& e) {
    return {e.code(), e.details()};
  }
  return {0, ""};
}

std::pair<int, std::string> parse_error(const std::string& extra, const std::string& args = "") {
  return error_of([&] { parse(extra, args); });
}

}  // namespace

TEST_CASE("bridge config: defaults are the reference's, and tether's keep its behaviour") {
  Config c = parse("");
  CHECK(c.network == "net1");
  CHECK(c.bridge == "cni0");
  CHECK_FALSE(c.is_gateway);
  CHECK_FALSE(c.is_default_gateway);
  CHECK_FALSE(c.force_address);
  CHECK_FALSE(c.ip_masq);
  CHECK(c.ip_masq_backend.empty());
  CHECK(c.mtu == 0);
  CHECK_FALSE(c.hairpin_mode);
  CHECK_FALSE(c.promisc_mode);
  CHECK(c.vlan == 0);
  CHECK(c.vlan_trunk.empty());
  CHECK_FALSE(c.vlan_filtering());
  CHECK_FALSE(c.preserve_default_vlan);
  CHECK_FALSE(c.macspoofchk);
  CHECK_FALSE(c.enable_dad);
  CHECK_FALSE(c.disable_container_interface);
  CHECK_FALSE(c.port_isolation);
  CHECK_FALSE(c.dns.has_value());
  CHECK_FALSE(c.mac.has_value());
  CHECK_FALSE(c.layer3());
  CHECK(c.icc);
  CHECK_FALSE(c.internal);
  CHECK_FALSE(c.isolate);
  CHECK(c.firewall == Firewall::kNftables);
  CHECK(c.nft_table == "tether");
  CHECK(c.state_dir == "/var/lib/cni/tether/bridge");
  CHECK(c.network_state_dir() == "/var/lib/cni/tether/bridge/net1");
  CHECK_FALSE(c.valid_attachments.has_value());
  CHECK_FALSE(c.isolated_port());
}

TEST_CASE("bridge config: every key is read, Go-style case-insensitively") {
  Config c = parse(R"("bridge":"br9","isGateway":true,"forceAddress":true,"ipMasq":true,
      "ipMasqBackend":"nftables","MTU":1400,"hairpinMode":true,"vlan":10,
      "vlanTrunk":[{"id":20},{"minID":30,"maxID":32},{"id":31}],"preserveDefaultVlan":true,
      "macspoofchk":true,"enabledad":true,"portIsolation":true,
      "dns":{"nameservers":["10.0.0.1"]},"icc":false,"internal":true,"isolate":true,
      "nftTable":"t-1.x","stateDir":"/tmp/st/","ipam":{"type":"host-local"})");
  CHECK(c.bridge == "br9");
  CHECK(c.is_gateway);
  CHECK_FALSE(c.is_default_gateway);
  CHECK(c.force_address);
  CHECK(c.ip_masq);
  CHECK(c.ip_masq_backend == "nftables");
  CHECK(c.mtu == 1400);
  CHECK(c.hairpin_mode);
  CHECK(c.vlan == 10);
  CHECK(c.vlan_trunk == std::vector<int>{20, 30, 31, 32});
  CHECK(c.vlan_filtering());
  CHECK(c.preserve_default_vlan);
  CHECK(c.macspoofchk);
  CHECK(c.enable_dad);
  CHECK(c.port_isolation);
  REQUIRE(c.dns.has_value());
  CHECK(c.dns->nameservers == std::vector<std::string>{"10.0.0.1"});
  CHECK_FALSE(c.icc);
  CHECK(c.internal);
  CHECK(c.isolate);
  CHECK(c.nft_table == "t-1.x");
  CHECK(c.state_dir == "/tmp/st");
  CHECK(c.layer3());
  CHECK(c.ipam_type == "host-local");
  CHECK(c.isolated_port());
  CHECK_FALSE(c.masquerade());  // internal: nothing is forwarded, so nothing is masqueraded
}

TEST_CASE("bridge config: isDefaultGateway implies isGateway; empty dns is not an override") {
  Config c = parse(R"("isDefaultGateway":true,"dns":{})");
  CHECK(c.is_gateway);
  CHECK(c.is_default_gateway);
  CHECK_FALSE(c.dns.has_value());
  CHECK(parse(R"("vlanTrunk":[])").vlan_filtering());  // present, even empty: as the reference
  CHECK(parse(R"("ipMasqBackend":"iptables")").ip_masq_backend == "iptables");
  CHECK(parse(R"("icc":false)").isolated_port());
}

TEST_CASE("bridge config: masquerade needs IPAM and a non-internal network") {
  CHECK_FALSE(parse(R"("ipMasq":true)").masquerade());
  CHECK(parse(R"("ipMasq":true,"ipam":{"type":"host-local"})").masquerade());
}

TEST_CASE("bridge config: reference validation messages, code 7") {
  CHECK(parse_error(R"("hairpinMode":true,"promiscMode":true)") ==
        std::pair<int, std::string>{
            7, "cannot set hairpin mode and promiscuous mode at the same time"});
  CHECK(parse_error(R"("vlan":4095)") ==
        std::pair<int, std::string>{7, "invalid VLAN ID 4095 (must be between 0 and 4094)"});
  CHECK(parse_error(R"("vlan":-1)").second == "invalid VLAN ID -1 (must be between 0 and 4094)");
  CHECK(parse_error(R"("vlanTrunk":[{"id":0}])").second == "incorrect trunk id parameter");
  CHECK(parse_error(R"("vlanTrunk":[{"minID":0,"maxID":3}])").second ==
        "incorrect trunk minID parameter");
  CHECK(parse_error(R"("vlanTrunk":[{"minID":1,"maxID":4095}])").second ==
        "incorrect trunk maxID parameter");
  CHECK(parse_error(R"("vlanTrunk":[{"minID":5,"maxID":3}])").second ==
        "minID is greater than maxID in trunk parameter");
  CHECK(parse_error(R"("vlanTrunk":[{"maxID":3}])").second ==
        "minID and maxID should be configured simultaneously, minID is missing");
  CHECK(parse_error(R"("vlanTrunk":[{"minID":3}])").second ==
        "minID and maxID should be configured simultaneously, maxID is missing");
  CHECK(parse_error(R"("disableContainerInterface":true,"ipam":{"type":"host-local"})").second ==
        "cannot use IPAM when DisableContainerInterface flag is set");
}

TEST_CASE("bridge config: wrong types and values name the key") {
  for (const char* extra : {R"("mtu":"1500")", R"("isGateway":"yes")", R"("bridge":5)",
                            R"("icc":"no")", R"("internal":1)", R"("isolate":null,"ipMasq":"true")",
                            R"("vlanTrunk":{"id":1})", R"("mtu":70000)", R"("nftTable":7)"}) {
    CAPTURE(extra);
    auto [code, details] = parse_error(extra);
    CHECK(code == 7);
  }
  CHECK(parse_error(R"("mtu":"1500")").second.find("mtu") != std::string::npos);
  CHECK(parse_error(R"("icc":"no")").second.find("icc") != std::string::npos);
  CHECK(parse_error(R"("firewall":"iptables")").second.find("firewall") != std::string::npos);
  CHECK(parse_error(R"("ipMasqBackend":"bpf")").second.find("ipMasqBackend") != std::string::npos);
  CHECK(parse_error(R"("nftTable":"")").second.find("nftTable") != std::string::npos);
  CHECK(parse_error(R"("nftTable":"a b")").first == 7);
  CHECK(parse_error(R"("stateDir":"relative/dir")").second.find("stateDir") != std::string::npos);
  CHECK(parse_error(R"("bridge":"a-name-longer-than-15")").second.find("bridge") !=
        std::string::npos);
  CHECK(parse("\"isolate\":null").isolate == false);  // null is unset, as in Go
}

TEST_CASE("bridge config: firewall none refuses switches that need netfilter") {
  CHECK(parse(R"("firewall":"none")").firewall == Firewall::kNone);
  CHECK_FALSE(parse(R"("firewall":"none")").uses_nft());
  for (const char* extra : {R"("ipMasq":true)", R"("icc":false)", R"("internal":true)",
                            R"("isolate":true)", R"("macspoofchk":true)"}) {
    CAPTURE(extra);
    auto [code, details] = parse_error(std::string(R"("firewall":"none",)") + extra);
    CHECK(code == 7);
    CHECK(details.find("none") != std::string::npos);
  }
}

TEST_CASE("bridge config: MAC precedence CNI_ARGS < args.cni.mac < runtimeConfig.mac") {
  CHECK(parse("", "MAC=02:00:00:00:00:01").mac.value().str() == "02:00:00:00:00:01");
  CHECK(parse(R"("args":{"cni":{"mac":"02:00:00:00:00:02"}})", "MAC=02:00:00:00:00:01")
            .mac.value()
            .str() == "02:00:00:00:00:02");
  CHECK(parse(R"("args":{"cni":{"mac":"02:00:00:00:00:02"}},
                 "runtimeConfig":{"mac":"02:00:00:00:00:03"})",
              "MAC=02:00:00:00:00:01")
            .mac.value()
            .str() == "02:00:00:00:00:03");
  CHECK(parse(R"("runtimeConfig":{"mac":"02:AA:BB:CC:DD:EE"})").mac.value().str() ==
        "02:aa:bb:cc:dd:ee");
  // An empty higher-precedence value does not hide a lower one, as in the reference.
  CHECK(parse(R"("runtimeConfig":{"mac":""})", "MAC=02:00:00:00:00:01").mac.value().str() ==
        "02:00:00:00:00:01");
  CHECK(parse_error(R"("runtimeConfig":{"mac":"nope"})").second.find("runtimeConfig.mac") !=
        std::string::npos);
  CHECK(parse_error("", "MAC=zz").first == 7);
}

TEST_CASE("bridge config: CNI_ARGS unknown keys are refused unless IgnoreUnknown") {
  CHECK(parse_error("", "FOO=1").first == 4);
  CHECK(parse_error("", "FOO=1;IgnoreUnknown=1").first == 0);
  CHECK(parse_error("", "K8S_POD_NAME=x;K8S_POD_NAMESPACE=y").first == 0);
}

TEST_CASE("bridge config: GC's valid attachments, either key") {
  Config c = parse(R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}])");
  REQUIRE(c.valid_attachments.has_value());
  CHECK(c.valid_attachments->size() == 1);
  CHECK(c.valid_attachments->at(0).container_id == "a");
  CHECK(c.valid_attachments->at(0).ifname == "eth0");
  Config old = parse(R"("cni.dev/attachments":[])");
  REQUIRE(old.valid_attachments.has_value());
  CHECK(old.valid_attachments->empty());
}

TEST_CASE("Mac: parse and format in one place") {
  CHECK(cni::Mac::parse("AA-bb-CC-dd-EE-ff")->str() == "aa:bb:cc:dd:ee:ff");
  CHECK(cni::Mac::parse("00:01:02:0a:fe:FF")->str() == "00:01:02:0a:fe:ff");
  CHECK_FALSE(cni::Mac::parse("aa:bb:cc:dd:ee").has_value());
  CHECK_FALSE(cni::Mac::parse("aa:bb:cc:dd:ee:fg").has_value());
  CHECK_FALSE(cni::Mac::parse("aabbccddeeff00000").has_value());
  CHECK_FALSE(cni::Mac::parse("aa:bb-cc:dd:ee:ff").has_value());  // one separator, as Go
  cni::Mac r = cni::Mac::random_local();
  CHECK((r.bytes()[0] & 0x03) == 0x02);  // unicast, locally administered
  CHECK(cni::Mac::parse(r.str()) == r);
}

TEST_CASE("bridge config: overlay, cluster ranges from ipam, ipMasqExclude") {
  const std::string ipam =
      R"("ipam":{"type":"host-local","ranges":[[{"subnet":"10.32.0.0/12"}],[{"subnet":"fd32::/48"}]]})";
  Config c = parse(R"("overlay":{"vni":4242},"ipMasq":true,)" + ipam);
  REQUIRE(c.overlay.has_value());
  CHECK(c.overlay->vni == 4242);
  CHECK(c.overlay->port == 4789);
  CHECK(c.overlay_device() == "tvx4242");
  CHECK(c.overlay_dir.empty());  // the cluster file's overlayDir, read at ADD
  CHECK(c.cluster_file == "/etc/tether/cluster.json");
  REQUIRE(c.cluster_ranges.size() == 1);  // the IPv4 ranges: VXLAN carries IPv4 blocks
  CHECK(c.cluster_ranges[0].str() == "10.32.0.0/12");

  c = parse(R"("overlay":{"vni":7,"port":8472},"cluster":"/etc/c.json","overlayDir":"/x/ov",)"
            R"("ipMasqExclude":["10.32.4.0/24","100.64.0.0/10","fd00::5/64"],)" +
            ipam);
  CHECK(c.overlay->port == 8472);
  CHECK(c.cluster_file == "/etc/c.json");
  CHECK(c.overlay_dir == "/x/ov");
  REQUIRE(c.ip_masq_exclude.size() == 3);
  CHECK(c.ip_masq_exclude[2].str() == "fd00::/64");
  // 10.32.4.0/24 lies inside the cluster range: one interval, not two overlapping ones.
  std::vector<std::string> ex;
  for (const auto& p : c.masq_exclusions()) ex.push_back(p.str());
  std::sort(ex.begin(), ex.end());
  CHECK(ex == std::vector<std::string>{"10.32.0.0/12", "100.64.0.0/10", "fd00::/64"});

  // Without an overlay, ipMasqExclude alone (cloud-routed pod CIDRs) and no cluster ranges.
  c = parse(R"("ipMasqExclude":["10.244.0.0/16"],)" + ipam);
  CHECK_FALSE(c.overlay.has_value());
  CHECK(c.cluster_ranges.empty());
  CHECK(c.overlay_device().empty());
  CHECK(c.masq_exclusions().size() == 1);

  auto fails = [&](const std::string& extra, const char* key) {
    // Not a structured binding: clang 14 cannot capture one in CHECK_MESSAGE's lambda.
    const auto error = parse_error(extra);
    const auto& details = error.second;
    CHECK_MESSAGE(error.first == cni::kErrInvalidConfig, extra);
    CHECK_MESSAGE(details.find(key) != std::string::npos, details);
  };
  fails(R"("overlay":{"port":4789},)" + ipam, "overlay.vni");
  fails(R"("overlay":{"vni":0},)" + ipam, "overlay.vni");
  fails(R"("overlay":{"vni":16777216},)" + ipam, "overlay.vni");
  fails(R"("overlay":{"vni":"1"},)" + ipam, "overlay.vni");
  fails(R"("overlay":{"vni":1,"port":0},)" + ipam, "overlay.port");
  fails(R"("overlay":{"vni":1,"port":65536},)" + ipam, "overlay.port");
  fails(R"("overlay":4242,)" + ipam, "overlay");
  fails(R"("overlay":{"vni":1})", "overlay");  // no ipam
  fails(R"("overlay":{"vni":1},"ipam":{"type":"host-local","ranges":[[{"subnet":"fd32::/48"}]]})",
        "IPv4 subnet");
  fails(R"("overlay":{"vni":1},"vlan":5,)" + ipam, "vlan");
  fails(R"("overlay":{"vni":1},"firewall":"none",)" + ipam, "overlay");
  fails(R"("overlay":{"vni":1},"overlayDir":"rel",)" + ipam, "overlayDir");
  fails(R"("overlay":{"vni":1},"ipam":{"type":"host-local","subnet":"10.1.0.0"})", "ipam.subnet");
  fails(R"("overlay":{"vni":1},"cluster":false,)" + ipam, "cluster");
  fails(R"("overlay":{"vni":1},"cluster":5,)" + ipam, "cluster");
  CHECK(parse(R"("overlay":{"vni":1},"cluster":true,)" + ipam).cluster_file ==
        "/etc/tether/cluster.json");
  fails(R"("ipMasqExclude":["10.0.0.0"])", "ipMasqExclude");
  fails(R"("ipMasqExclude":"10.0.0.0/8")", "ipMasqExclude");
  fails(R"("ipMasqExclude":[5])", "ipMasqExclude");
}
