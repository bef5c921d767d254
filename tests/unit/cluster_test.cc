// The cluster file (common/cluster.h) and base64 (common/base64.h): every bad value is error 7
// naming its key; a plugin without `cluster` never looks for a file.
#include "common/cluster.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/base64.h"
#include "common/error.h"
#include "common/etcd.h"

using cni::Error;
using cni::cluster::ClusterConfig;
using json = nlohmann::json;

namespace {

json good() {
  return {{"etcd", {"http://192.168.50.10:2379/", "https://192.168.50.11:2379"}},
          {"node", "docker1"},
          {"address", "192.168.50.101"}};
}

// The Error 7 message that parsing `j` gives, "" when it parses.
std::string config_error(const json& j) {
  try {
    ClusterConfig::parse(j, "cluster");
    return "";
  } catch (const Error& e) {
    CHECK(e.code() == cni::kErrInvalidConfig);
    return e.what();
  }
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tether-cluster-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::string cmd = "rm -rf " + path;
    CHECK(std::system(cmd.c_str()) == 0);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
};

}  // namespace

TEST_CASE("base64 round-trips every length and rejects bad text") {
  CHECK(cni::base64_encode("") == "");
  CHECK(cni::base64_encode("f") == "Zg==");
  CHECK(cni::base64_encode("fo") == "Zm8=");
  CHECK(cni::base64_encode("foo") == "Zm9v");
  CHECK(cni::base64_encode("foobar") == "Zm9vYmFy");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); n += 7) {
    std::string s = all.substr(0, n);
    CHECK(cni::base64_decode(cni::base64_encode(s)) == s);
  }
  CHECK(cni::base64_encode("\xff\xfe") == "//4=");
  CHECK(!cni::base64_decode("Zg="));
  CHECK(!cni::base64_decode("Z==="));
  CHECK(!cni::base64_decode("Zg=a"));
  CHECK(!cni::base64_decode("Zm9v\n"));
  CHECK(!cni::base64_decode("Zm-v"));
  CHECK(!cni::base64_decode("=m9v"));
}

TEST_CASE("a cluster file with defaults") {
  ClusterConfig c = ClusterConfig::parse(good(), "cluster");
  CHECK(c.etcd ==
        std::vector<std::string>{"http://192.168.50.10:2379", "https://192.168.50.11:2379"});
  CHECK(c.node == "docker1");
  CHECK(c.address.str() == "192.168.50.101");
  CHECK(!c.tls);
  CHECK(c.prefix == "/tether");
  CHECK(c.agent_socket == "/run/tether/agent.sock");
  CHECK(c.state_dir == "/var/lib/tether/agent");
  CHECK(c.lease_ttl == 10);
  CHECK(c.timeout_ms == 2000);
  CHECK(c.key("nodes/docker1") == "/tether/nodes/docker1");

  json j = good();
  j["prefix"] = "/t1/run5/";
  j["agentSocket"] = "/run/x/a.sock";
  j["stateDir"] = "/var/lib/x";
  j["leaseTTL"] = 4;
  j["timeoutMs"] = 300;
  j["address"] = "fd00::1";
  c = ClusterConfig::parse(j, "cluster");
  CHECK(c.prefix == "/t1/run5");
  CHECK(c.agent_socket == "/run/x/a.sock");
  CHECK(c.state_dir == "/var/lib/x");
  CHECK(c.lease_ttl == 4);
  CHECK(c.timeout_ms == 300);
  CHECK(c.address.str() == "fd00::1");
}

TEST_CASE("every bad value of the cluster file names its key") {
  auto with = [](const char* key, json v) {
    json j = good();
    if (v.is_discarded()) {
      j.erase(key);
    } else {
      j[key] = v;
    }
    return config_error(j);
  };
  json missing(json::value_t::discarded);
  CHECK(config_error(json::array()).find("cluster must be a JSON object") != std::string::npos);
  CHECK(with("etcd", missing).find("cluster.etcd") != std::string::npos);
  CHECK(with("etcd", json::array()).find("cluster.etcd must list") != std::string::npos);
  CHECK(with("etcd", "http://a:2379").find("cluster.etcd") != std::string::npos);
  CHECK(with("etcd", {"http://a:2379", 5}).find("cluster.etcd[1]") != std::string::npos);
  CHECK(with("etcd", {"a:2379"}).find("cluster.etcd[0]") != std::string::npos);
  CHECK(with("etcd", {"http://"}).find("cluster.etcd[0]") != std::string::npos);
  CHECK(with("etcd", {"unix:///x"}).find("cluster.etcd[0]") != std::string::npos);
  CHECK(with("node", missing).find("cluster.node is required") != std::string::npos);
  CHECK(with("node", "").find("cluster.node") != std::string::npos);
  CHECK(with("node", "a/b").find("cluster.node") != std::string::npos);
  CHECK(with("node", "-x").find("cluster.node") != std::string::npos);
  CHECK(with("node", std::string(64, 'a')).find("cluster.node") != std::string::npos);
  CHECK(with("node", 3).find("cluster.node") != std::string::npos);
  CHECK(with("address", missing).find("cluster.address is required") != std::string::npos);
  CHECK(with("address", "host1").find("cluster.address") != std::string::npos);
  CHECK(with("address", "0.0.0.0").find("cluster.address") != std::string::npos);
  CHECK(with("address", "10.0.0.1/24").find("cluster.address") != std::string::npos);
  CHECK(with("prefix", "tether").find("cluster.prefix") != std::string::npos);
  CHECK(with("prefix", "/").find("cluster.prefix") != std::string::npos);
  CHECK(with("agentSocket", "run/a.sock").find("cluster.agentSocket") != std::string::npos);
  CHECK(with("stateDir", "").find("cluster.stateDir") != std::string::npos);
  CHECK(with("leaseTTL", 1).find("cluster.leaseTTL") != std::string::npos);
  CHECK(with("leaseTTL", "10").find("cluster.leaseTTL") != std::string::npos);
  CHECK(with("timeoutMs", 10).find("cluster.timeoutMs") != std::string::npos);
  CHECK(with("tls", "x").find("cluster.tls") != std::string::npos);
  CHECK(with("tls", {{"cert", "/nonexistent/cert.pem"}, {"key", "/nonexistent/key.pem"}})
            .find("cluster.tls.cert") != std::string::npos);
  CHECK(with("tls", {{"ca", "/nonexistent/ca.pem"}}).find("cluster.tls.ca") != std::string::npos);
}

TEST_CASE("tls files must exist, and a cert needs its key") {
  TempDir d;
  std::string cert = d.write("c.pem", "x"), key = d.write("k.pem", "y"),
              ca = d.write("ca.pem", "z");
  json j = good();
  j["tls"] = {{"cert", cert}, {"key", key}, {"ca", ca}};
  ClusterConfig c = ClusterConfig::parse(j, "cluster");
  REQUIRE(c.tls);
  CHECK(c.tls->cert == cert);
  CHECK(c.tls->key == key);
  CHECK(c.tls->ca == ca);
  j["tls"] = {{"cert", cert}};
  CHECK(config_error(j).find("cluster.tls.key is required") != std::string::npos);
  j["tls"] = {{"key", key}};
  CHECK(config_error(j).find("cluster.tls.cert is required") != std::string::npos);
  j["tls"] = {{"ca", ca}};
  CHECK(ClusterConfig::parse(j, "cluster").tls->cert.empty());
}

TEST_CASE("the plugin's cluster key: absent is off, a path loads that file") {
  TempDir d;
  std::string file = d.write("cluster.json", good().dump());
  CHECK(!cni::cluster::from_plugin_conf(json::object(), "ipam"));
  CHECK(!cni::cluster::from_plugin_conf(json{{"cluster", nullptr}}, "ipam"));
  CHECK(!cni::cluster::from_plugin_conf(json{{"cluster", false}}, "ipam"));
  auto c = cni::cluster::from_plugin_conf(json{{"Cluster", file}}, "ipam");  // Go's key match
  REQUIRE(c);
  CHECK(c->node == "docker1");
  CHECK(c->path == file);

  auto error_of = [](const json& conf) {
    try {
      cni::cluster::from_plugin_conf(conf, "ipam");
      return std::string();
    } catch (const Error& e) {
      CHECK(e.code() == cni::kErrInvalidConfig);
      return std::string(e.what());
    }
  };
  CHECK(error_of({{"cluster", d.path + "/missing.json"}}).find("ipam.cluster") !=
        std::string::npos);
  CHECK(error_of({{"cluster", ""}}).find("ipam.cluster") != std::string::npos);
  CHECK(error_of({{"cluster", 3}}).find("ipam.cluster") != std::string::npos);
  CHECK(error_of({{"cluster", d.write("bad.json", "{")}}).find("not valid JSON") !=
        std::string::npos);
  json bad = good();
  bad["node"] = "a b";
  CHECK(error_of({{"cluster", d.write("bad2.json", bad.dump())}}).find("ipam.cluster.node") !=
        std::string::npos);
  // true means the default file; on a machine without one that is an error naming the key.
  if (access(cni::cluster::kDefaultFile, F_OK) != 0) {
    CHECK(error_of({{"cluster", true}}).find(cni::cluster::kDefaultFile) != std::string::npos);
  }
  CHECK(ClusterConfig::load(file).path == file);
}
TEST_CASE("etcd prefix ranges") {
  CHECK(cni::etcd::prefix_end("/tether/nodes/") == "/tether/nodes0");
  CHECK(cni::etcd::prefix_end("a\xff") == "b");
  CHECK(cni::etcd::prefix_end("\xff\xff") == std::string(1, '\0'));
}
