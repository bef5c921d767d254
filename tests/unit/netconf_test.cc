#include "common/netconf.h"

#include <doctest/doctest.h>

#include "common/error.h"

using cni::json;

namespace {

int code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const cni::Error& e) {
    return e.code();
  }
  return 0;
}

}  // namespace

TEST_CASE("netconf: keys match like Go's encoding/json") {
  json j = json::parse(R"({"hostPort":1,"HOSTIP":"x","Protocol":"tcp","nul":null})");
  CHECK(cni::find_key(j, "hostPort")->get<int>() == 1);
  CHECK(cni::find_key(j, "hostIP")->get<std::string>() == "x");
  CHECK(cni::find_key(j, "protocol")->get<std::string>() == "tcp");
  CHECK(cni::find_key(j, "nul") == nullptr);
  CHECK(cni::find_key(j, "missing") == nullptr);
  json both = json::parse(R"({"MTU":1,"mtu":2})");
  CHECK(cni::find_key(both, "mtu")->get<int>() == 2);
}

TEST_CASE("netconf: typed readers name the key on a wrong type or range") {
  json j = json::parse(R"({"mtu":"1500","vlan":5000,"flag":1,"list":["a",1],"f":1.5})");
  try {
    cni::get_int(j, "mtu", "bridge");
    FAIL("accepted");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrInvalidConfig);
    CHECK(e.details().find("bridge.mtu") != std::string::npos);
  }
  CHECK(code_of([&] { cni::get_int(j, "vlan", "", 0, 4094); }) == 7);
  CHECK(code_of([&] { cni::get_int(j, "f"); }) == 7);
  CHECK(code_of([&] { cni::get_bool(j, "flag"); }) == 7);
  CHECK(code_of([&] { cni::get_string_list(j, "list"); }) == 7);
  CHECK(code_of([&] { cni::get_object(j, "mtu"); }) == 7);
  CHECK(code_of([&] { cni::get_array(j, "mtu"); }) == 7);
  CHECK_FALSE(cni::get_int(j, "absent"));
  CHECK(code_of([&] { cni::get_int(json::parse(R"({"n":18446744073709551615})"), "n"); }) == 7);
}

TEST_CASE("netconf: CNI_ARGS parsing and unknown keys") {
  auto a = cni::CniArgs::parse("IP=10.0.0.5;K8S_POD_NAME=web;MAC=aa:bb:cc:dd:ee:ff");
  CHECK(a.get("IP") == "10.0.0.5");
  CHECK(a.get("MAC") == "aa:bb:cc:dd:ee:ff");
  CHECK_FALSE(a.get("X"));
  CHECK(code_of([&] { a.check_known({"IP", "MAC"}); }) == 0);
  CHECK(code_of([&] { a.check_known({"IP"}); }) == cni::kErrInvalidEnv);
  auto ignore = cni::CniArgs::parse("IgnoreUnknown=1;FOO=bar");
  CHECK(code_of([&] { ignore.check_known({}); }) == 0);
  auto ignore_true = cni::CniArgs::parse("IgnoreUnknown=true;FOO=bar");
  CHECK(code_of([&] { ignore_true.check_known({}); }) == 0);
  CHECK(code_of([] { cni::CniArgs::parse("IP"); }) == cni::kErrInvalidEnv);
  CHECK(code_of([] { cni::CniArgs::parse("=x"); }) == cni::kErrInvalidEnv);
  CHECK(cni::CniArgs::parse("").pairs().empty());
  CHECK(cni::CniArgs::parse("A=;B=c=d").get("B") == "c=d");
}

TEST_CASE("netconf: shared fields") {
  auto c = cni::NetConf::parse(R"({"cniVersion":"1.0.0","name":"n","type":"bridge",
      "ipam":{"type":"host-local"},"dns":{"nameservers":["1.1.1.1"]},
      "runtimeConfig":{"portMappings":[]},"args":{"cni":{"ips":["10.0.0.9"]}},
      "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}})");
  CHECK(c.ipam_type() == "host-local");
  CHECK(c.dns->nameservers == std::vector<std::string>{"1.1.1.1"});
  CHECK(c.runtime_config.contains("portMappings"));
  CHECK(c.args["cni"]["ips"][0] == "10.0.0.9");
  CHECK(c.prev_result->ips[0].address.str() == "10.0.0.2/24");
  auto bare = cni::NetConf::parse(R"({"name":"n","type":"t"})");
  CHECK(bare.cni_version == "0.1.0");
  CHECK(bare.ipam_type().empty());
  CHECK_FALSE(bare.prev_result);
}
