#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "common/error.h"
#include "common/files.h"
#include "plugins/dns-sidecar/registry.h"
#include "tests/unit/temp_dir.h"

using cni::dns::AttachmentKey;
using cni::dns::Record;

namespace {

Record sample() {
  Record r;
  r.key = {{"net1", "c1", "eth0"}, ""};
  r.name = "web1";
  r.hostname = "host1";
  r.aliases = {"Web", "api"};
  r.container_aliases = {"me", "db=postgres"};
  r.addresses = {*cni::Prefix::parse("10.1.0.5/24"), *cni::Prefix::parse("fd00::5/64")};
  r.gateways = {*cni::IpAddr::parse("10.1.0.1")};
  r.upstreams = {"10.9.0.1"};
  r.net = {"test.internal", {"10.9.0.2:5353"}, true, 30, 5353};
  r.serial = 42;
  return r;
}

using tether_test::TempDir;

}  // namespace

TEST_CASE("dns registry: a record survives JSON") {
  Record r = sample();
  Record back = Record::from_json(r.to_json());
  CHECK(back.to_json() == r.to_json());
  CHECK(back.net.port == 5353);
  CHECK(back.addresses[1].str() == "fd00::5/64");
  CHECK(r.network_names() == std::vector<std::string>{"web1", "host1", "web", "api"});
}

TEST_CASE("dns registry: invalid records are refused naming the field") {
  auto bad = [](auto mutate, const char* text) {
    cni::dns::json j = sample().to_json();
    mutate(j);
    try {
      Record::from_json(j);
      FAIL("accepted: " << j.dump());
    } catch (const cni::Error& e) {
      CHECK(e.code() == cni::kErrInvalidConfig);
      CHECK_MESSAGE(std::string(e.what()).find(text) != std::string::npos, e.what());
    }
  };
  bad([](cni::dns::json& j) { j["aliases"] = {"ok", "not ok"}; }, "alias");
  bad([](cni::dns::json& j) { j["name"] = "a..b"; }, "name");
  bad([](cni::dns::json& j) { j["containerAliases"] = {"x=bad target"}; },
      "container alias target");
  bad([](cni::dns::json& j) { j["addresses"] = {"10.1.0.300/24"}; }, "addresses");
  bad([](cni::dns::json& j) { j["upstreams"] = {"nowhere"}; }, "nowhere");
  bad([](cni::dns::json& j) { j.erase("containerID"); }, "containerID");
  bad([](cni::dns::json& j) { j["port"] = 0; }, "port");
}

TEST_CASE("dns registry: the store writes, lists, loads and removes atomically") {
  TempDir dir;
  cni::dns::RecordStore store(dir.path);
  Record a = sample();
  Record b = sample();
  b.key = {{"net2", "c-2.x", "eth1"}, ""};
  store.save(a);
  store.save(b);
  // Leftovers of an interrupted atomic write and foreign files are not records.
  cni::atomic_write(dir.path + "/records/.net1@c9@eth0.json.tmp-1-2", "{");
  cni::atomic_write(dir.path + "/records/README", "x");
  CHECK(store.list().size() == 2);
  REQUIRE(store.list("net2").size() == 1);
  CHECK(store.list("net2")[0] == b.key);
  CHECK(store.load(a.key)->to_json() == a.to_json());
  CHECK(!store.load({"net1", "nope", "eth0"}));
  // A corrupt file is skipped, not fatal.
  cni::atomic_write(store.path({"net1", "bad", "eth0"}), "{not json");
  CHECK(store.load_all().size() == 2);
  CHECK(store.remove(a.key));
  CHECK(!store.remove(a.key));
  CHECK(store.load_all("net1").empty());
}

TEST_CASE("dns registry: replace_network swaps one network's records only") {
  cni::dns::Registry reg;
  Record a = sample();
  Record b = sample();
  b.key.network = "net2";
  reg.upsert(a);
  reg.upsert(b);
  Record c = sample();
  c.key.container_id = "c3";
  reg.replace_network("net1", {c});
  CHECK(reg.records().size() == 2);
  CHECK(reg.records().count(c.key) == 1);
  CHECK(reg.records().count(a.key) == 0);
  CHECK(reg.erase(b.key));
  CHECK(!reg.erase(b.key));
}
