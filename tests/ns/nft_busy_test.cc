// tether's own commits, made by the plugins' code, while another writer commits between their
// reads and their commits every time: TETHER_TEST_NFT_INTERFERE, the hook compiled into this
// binary's nft::run (tests/CMakeLists.txt), adds a chain to a table of its own right before each
// commit. No call may fail, and none may need a second attempt.
#include <doctest/doctest.h>
#include <stdlib.h>

#include "common/error.h"
#include "common/netconf.h"
#include "common/netns.h"
#include "common/nft.h"
#include "plugins/bridge/firewall.h"
#include "plugins/portmap/plan.h"
#include "plugins/portmap/portmap.h"
#include "tests/ns/fixture.h"

using cni::NetnsGuard;
using tnst::TestNetns;
namespace nft = cni::nft;

namespace {

// Sets TETHER_TEST_NFT_INTERFERE for its lifetime; counts the interfering commits (one chain
// each) so far.
class Interference {
 public:
  explicit Interference(std::string table) : table_(std::move(table)) {
    setenv("TETHER_TEST_NFT_INTERFERE", table_.c_str(), 1);
  }
  ~Interference() { unsetenv("TETHER_TEST_NFT_INTERFERE"); }
  size_t commits() const {
    auto chains = nft::NftTransaction::open().list_chains(nft::Family::kIpv4, table_);
    return chains ? chains->size() : 0;
  }

 private:
  std::string table_;
};

cni::bridge::AttachmentState bridge_attachment() {
  cni::bridge::AttachmentState s;
  s.container_id = "c1";
  s.ifname = "eth0";
  s.bridge = "tbr0";
  s.fw_ifaces = {"tbr0"};
  s.host_veth = "tveth0";
  s.container_mac = "02:00:00:00:00:01";
  s.masq_ips = {"10.1.0.2", "fd00:1::2"};
  s.spoofchk = true;
  return s;
}

cni::portmap::Config portmap_config(const std::string& table, const std::string& state_dir) {
  const std::string text = R"({"cniVersion":"1.0.0","name":"n","type":"portmap","nftTable":")" +
                           table + R"(","stateDir":")" + state_dir +
                           R"(","runtimeConfig":{"portMappings":[)"
                           R"({"hostPort":18080,"containerPort":80,"protocol":"tcp"},)"
                           R"({"hostPort":18053,"containerPort":53,"protocol":"udp"}]}})";
  return cni::portmap::Config::parse(cni::NetConf::parse(text));
}

}  // namespace

TEST_CASE("bridge and portmap commits succeed while another writer commits before each of them") {
  TestNetns ns("nftbusy");
  NetnsGuard guard(ns.fd());
  const std::string p = tnst::prefix();
  Interference other(p + "_other");

  const cni::bridge::NftFirewall fw(p + "_br");
  const cni::bridge::BridgePolicy policy{{"tbr0"}, /*icc=*/false, false, /*isolate=*/true};
  const cni::bridge::AttachmentState st = bridge_attachment();
  fw.add(policy, st);
  CHECK(other.commits() == 1);
  CHECK(fw.verify(policy, st).empty());
  fw.remove({st});
  CHECK(other.commits() == 2);
  CHECK(fw.verify(policy, st).size() == 6);  // 4 masquerade and 2 macspoofchk elements gone
  fw.remove_bridge({"tbr0"});
  CHECK(other.commits() == 3);
  fw.remove({st});  // nothing left to remove: nothing to commit
  CHECK(other.commits() == 3);

  const std::string state_dir = "/tmp/" + p + "-portmap";
  const cni::portmap::Config config = portmap_config(p + "_pm", state_dir);
  cni::portmap::ContainerAddrs addrs;
  addrs.v4 = cni::Prefix::parse("10.1.0.2/24");
  const cni::portmap::Plan plan = cni::portmap::make_plan(config, addrs);
  const cni::portmap::Attachment a{"n", "c1", "eth0"};
  cni::portmap::publish(config, a, plan);
  CHECK(other.commits() == 4);
  cni::portmap::verify(config, plan);
  cni::portmap::publish(config, a, plan);  // a repeated ADD replaces its own elements
  CHECK(other.commits() == 5);
  cni::portmap::unpublish(config, a);
  CHECK(other.commits() == 6);
  CHECK_THROWS_AS(cni::portmap::verify(config, plan), cni::Error);
  tnst::sh("rm -rf " + state_dir);
}
