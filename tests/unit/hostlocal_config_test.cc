// host-local Config::parse: defaults, set order, validation (code 7 naming the key) and the
// precedence of requested addresses (CNI_ARGS < args < runtimeConfig).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "plugins/ipam-host-local/config.h"

using cni::hostlocal::Config;
using json = nlohmann::json;

namespace {

Config parse(json conf, const std::string& cni_args = "") {
  if (!conf.contains("name")) conf["name"] = "net1";
  if (!conf.contains("type")) conf["type"] = "bridge";
  if (!conf.contains("cniVersion")) conf["cniVersion"] = "1.0.0";
  return Config::parse(cni::NetConf::parse(conf.dump()), cni::CniArgs::parse(cni_args));
}

// "code | msg | details" of the error parse() throws.
std::string error_of(const json& conf, const std::string& cni_args = "") {
  try {
    parse(conf, cni_args);
  } catch (const cni::Error& e) {
    return std::to_string(e.code()) + " | " + e.msg() + " | " + e.details();
  }
  return "no error";
}

std::vector<std::string> ips(const Config& c) {
  std::vector<std::string> out;
  for (const auto& ip : c.requested_ips) out.push_back(ip.str());
  return out;
}

const json kIpam = {{"type", "host-local"}, {"subnet", "10.1.0.0/24"}};

}  // namespace

TEST_CASE("hostlocal config defaults") {
  Config c = parse({{"ipam", kIpam}});
  CHECK(c.network == "net1");
  CHECK(c.data_dir == "/var/lib/cni/networks");
  CHECK(c.store_dir() == "/var/lib/cni/networks/net1");
  CHECK(c.resolv_conf.empty());
  CHECK(c.routes.empty());
  REQUIRE(c.range_sets.size() == 1);
  CHECK(c.range_sets[0][0].str() == "10.1.0.1-10.1.0.254");
  CHECK(c.requested_ips.empty());
  CHECK_FALSE(c.valid_attachments);
}

TEST_CASE("hostlocal config set order: ipRanges, legacy subnet, ranges") {
  json ipam = kIpam;
  ipam["ranges"] = json::array({json::array({{{"subnet", "fd00::/64"}}})});
  ipam["dataDir"] = "/tmp/x";
  ipam["routes"] = json::array({{{"dst", "0.0.0.0/0"}}, {{"dst", "::/0"}, {"gw", "fd00::9"}}});
  json conf = {
      {"ipam", ipam},
      {"runtimeConfig", {{"ipRanges", json::array({json::array({{{"subnet", "10.2.0.0/24"}}})})}}}};
  Config c = parse(conf);
  REQUIRE(c.range_sets.size() == 3);
  CHECK(c.range_sets[0][0].subnet.str() == "10.2.0.0/24");
  CHECK(c.range_sets[1][0].subnet.str() == "10.1.0.0/24");
  CHECK(c.range_sets[2][0].subnet.str() == "fd00::/64");
  CHECK(c.data_dir == "/tmp/x");
  REQUIRE(c.routes.size() == 2);
  CHECK_FALSE(c.routes[0].gw);  // passed through: the consumer picks the family's gateway
  CHECK(c.routes[1].gw->str() == "fd00::9");
}

TEST_CASE("hostlocal config keys match case-insensitively, as Go's encoding/json") {
  Config c = parse(
      {{"IPAM", {{"Subnet", "10.1.0.0/24"}, {"RANGESTART", "10.1.0.10"}, {"dataDIR", "/tmp/y"}}}});
  CHECK(c.range_sets[0][0].str() == "10.1.0.10-10.1.0.254");
  CHECK(c.data_dir == "/tmp/y");
}

TEST_CASE("hostlocal config errors are code 7 and name the key") {
  CHECK(error_of(json::object()) == "7 | IPAM config missing 'ipam' key | ipam");
  CHECK(error_of({{"ipam", {{"type", "host-local"}}}}) ==
        "7 | no IP ranges specified | ipam.ranges");
  CHECK(error_of({{"ipam", {{"subnet", "10.1.0.0/32"}}}}) ==
        "7 | invalid range set 0: Network 10.1.0.0/32 too small to allocate from | ipam.subnet");
  CHECK(error_of({{"ipam", {{"subnet", "nonsense"}}}}) ==
        "7 | invalid CIDR address: nonsense | ipam.subnet");
  CHECK(error_of({{"ipam", {{"subnet", 5}}}})
            .starts_with("7 | invalid network configuration | "
                         "ipam.subnet: expected a string"));
  CHECK(error_of({{"ipam",
                   {{"ranges", json::array({json::array(
                                   {{{"subnet", "10.0.0.0/24"}, {"gateway", "x"}}})})}}}}) ==
        "7 | invalid IP address: x | ipam.ranges[0][0].gateway");
  CHECK(error_of({{"ipam", {{"ranges", json::array({json::array({json::object()})})}}}}) ==
        "7 | missing subnet | ipam.ranges[0][0].subnet");
  CHECK(error_of({{"ipam", {{"ranges", json::array({json::array()})}}}}) ==
        "7 | invalid range set 0: empty range set | ipam.ranges[0]");
  CHECK(error_of({{"ipam",
                   {{"ranges", json::array({json::array({{{"subnet", "10.0.0.0/24"}}}),
                                            json::array({{{"subnet", "10.0.0.0/16"}}})})}}}}) ==
        "7 | range set 0 overlaps with 1 | ipam.ranges[1]");
  json ipam = kIpam;
  ipam["routes"] = json::array({{{"dst", "10.0.0.0"}}});
  CHECK(error_of({{"ipam", ipam}})
            .starts_with("7 | invalid network configuration | "
                         "ipam.routes[0]: routes[].dst is not a CIDR"));
  CHECK(error_of({{"ipam", kIpam}, {"runtimeConfig", {{"ips", json::array({"x"})}}}}) ==
        "7 | invalid IP address x | runtimeConfig.ips[0]");
  CHECK(
      error_of({{"ipam", kIpam}, {"args", {{"cni", {{"ips", json::array({"1.2.3.4", "y"})}}}}}}) ==
      "7 | invalid IP address y | args.cni.ips[1]");
  CHECK(error_of({{"ipam", kIpam}, {"cni.dev/valid-attachments", json::array({{{"ifname", "e"}}})}})
            .starts_with("7 | invalid network configuration | "
                         "cni.dev/valid-attachments[0].containerID"));
}

TEST_CASE("hostlocal config CNI_ARGS errors are code 4") {
  CHECK(error_of({{"ipam", kIpam}}, "FOO=bar") ==
        "4 | invalid CNI_ARGS | ARGS: unknown args \"FOO\"");
  CHECK(error_of({{"ipam", kIpam}}, "IP=nope") ==
        "4 | invalid CNI_ARGS | ARGS: error parsing value of pair \"IP=nope\": invalid IP "
        "address nope");
  CHECK(error_of({{"ipam", kIpam}}, "IgnoreUnknown=1;FOO=bar") == "no error");
  CHECK(error_of({{"ipam", kIpam}}, "K8S_POD_NAME=x;IP=10.1.0.5/24") == "no error");
}

TEST_CASE("hostlocal config requested IPs: CNI_ARGS < args < runtimeConfig") {
  json conf = {{"ipam", kIpam}};
  CHECK(ips(parse(conf, "IP=10.1.0.5")) == std::vector<std::string>{"10.1.0.5"});
  conf["args"] = {{"cni", {{"ips", json::array({"10.1.0.6/24", "10.1.0.6"})}}}};
  CHECK(ips(parse(conf, "IP=10.1.0.5")) == std::vector<std::string>{"10.1.0.6"});
  conf["runtimeConfig"] = {{"ips", json::array({"10.1.0.7", "fd00::7/64"})}};
  CHECK(ips(parse(conf, "IP=10.1.0.5")) == std::vector<std::string>{"10.1.0.7", "fd00::7"});
  // An IPv4-mapped address is the IPv4 address, as for Go's net.IP.
  CHECK(ips(parse({{"ipam", kIpam}}, "IP=::ffff:10.1.0.9")) ==
        std::vector<std::string>{"10.1.0.9"});
}

TEST_CASE("hostlocal config GC attachments: valid-attachments preferred, attachments accepted") {
  json conf = {{"ipam", kIpam},
               {"cni.dev/attachments", json::array({{{"containerID", "a"}, {"ifname", "eth0"}}})}};
  auto c = parse(conf);
  REQUIRE(c.valid_attachments);
  CHECK(c.valid_attachments->at(0).container_id == "a");
  conf["cni.dev/valid-attachments"] = json::array();
  c = parse(conf);
  REQUIRE(c.valid_attachments);
  CHECK(c.valid_attachments->empty());
}

TEST_CASE("hostlocal config cluster mode: keys, defaults and errors") {
  char tmpl[] = "/tmp/tether-hl-cluster-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string file = std::string(tmpl) + "/cluster.json";
  {
    std::ofstream(file) << R"({"etcd":["http://10.0.0.1:2379"],"node":"n1","address":"10.0.0.5"})";
  }
  json ipam = {{"type", "host-local"}, {"subnet", "10.32.0.0/12"}, {"cluster", file}};
  Config c = parse({{"ipam", ipam}});
  REQUIRE(c.cluster);
  CHECK(c.cluster->node == "n1");
  CHECK(c.block_size == 24);
  CHECK(!c.release_empty_blocks);
  CHECK(!parse({{"ipam", kIpam}}).cluster);  // no key: no cluster, whatever is on disk

  json j = ipam;
  j["blockSize"] = 26;
  j["releaseEmptyBlocks"] = true;
  c = parse({{"ipam", j}});
  CHECK(c.block_size == 26);
  CHECK(c.release_empty_blocks);

  j = ipam;
  j["blockSize"] = 11;
  CHECK(error_of({{"ipam", j}}).find("ipam.blockSize") != std::string::npos);
  j["blockSize"] = 31;
  CHECK(error_of({{"ipam", j}}).find("ipam.blockSize") != std::string::npos);
  j["blockSize"] = "24";
  CHECK(error_of({{"ipam", j}}).find("ipam.blockSize") != std::string::npos);
  j = ipam;
  j["gateway"] = "10.32.0.1";
  CHECK(error_of({{"ipam", j}}).find("7 | ") == 0);
  j = {{"type", "host-local"},
       {"cluster", file},
       {"ranges", {{{{"subnet", "10.32.0.0/12"}}, {{"subnet", "10.64.0.0/12"}}}}}};
  CHECK(error_of({{"ipam", j}}).find("ipam.ranges[0]") != std::string::npos);
  j = {{"type", "host-local"},
       {"cluster", file},
       {"ranges", {{{{"subnet", "10.32.0.0/12"}, {"rangeStart", "10.32.0.10"}}}}}};
  CHECK(error_of({{"ipam", j}}).find("ipam.ranges[0][0]") != std::string::npos);
  j = ipam;
  j["cluster"] = std::string(tmpl) + "/missing.json";
  CHECK(error_of({{"ipam", j}}).find("ipam.cluster") != std::string::npos);
  std::string cmd = "rm -rf " + std::string(tmpl);
  CHECK(std::system(cmd.c_str()) == 0);
}
