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

TEST_CASE("netconf: printable keeps UTF-8, escapes the rest, and bounds the size") {
  CHECK(cni::printable("plain") == "plain");
  CHECK(cni::printable("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(cni::printable("\xff") == "\\xff");
  CHECK(cni::printable("\xc3") == "\\xc3");                             // truncated sequence
  CHECK(cni::printable("\xc0\x80") == "\\xc0\\x80");                    // overlong NUL
  CHECK(cni::printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");           // surrogate
  CHECK(cni::printable("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(cni::valid_utf8("\xf0\x9f\x98\x80"));
  CHECK_FALSE(cni::valid_utf8("\xf0\x9f\x98"));
  std::string big(1 << 20, 'a');
  auto p = cni::printable(big, 100);
  CHECK(p.size() < 130);
  CHECK(p.find("1048576 bytes") != std::string::npos);
  // Every Error's text is printable, whatever it was built from.
  cni::Error e(7, "m\xff", "d\xfe");
  CHECK(e.msg() == "m\\xff");
  CHECK(e.details() == "d\\xfe");
  CHECK(cni::json{{"m", e.what()}}.dump().size() > 0);
}

TEST_CASE("netconf: json_depth counts nesting outside strings") {
  CHECK(cni::json_depth("1") == 0);
  CHECK(cni::json_depth("[]") == 1);
  CHECK(cni::json_depth(R"({"a":[{"b":[]}]})") == 4);
  CHECK(cni::json_depth(R"(["[[[", "\"[[["])") == 1);
  CHECK(cni::json_depth(std::string(100000, '[')) == cni::kMaxJsonDepth + 1);  // stops early
  CHECK(code_of([] { cni::parse_untrusted(std::string(65, '[') + std::string(65, ']'), 6); }) == 6);
  CHECK(cni::parse_untrusted("[1", 6).is_discarded());
  // parse_bounded: too deep is the same as not JSON, for readers of files and sockets.
  CHECK(cni::parse_bounded(std::string(65, '[') + std::string(65, ']')).is_discarded());
  CHECK(cni::parse_bounded(std::string(100000, '{')).is_discarded());
  CHECK(cni::parse_bounded("[1").is_discarded());
  CHECK(cni::parse_bounded(std::string(64, '[') + std::string(64, ']')).is_array());
}

TEST_CASE("netconf: a wrong-typed huge value is quoted in a short excerpt") {
  json j = {{"name", json::array()}};
  for (int i = 0; i < 100000; ++i) j["name"].push_back(i);
  try {
    cni::get_string(j, "name");
    FAIL("no throw");
  } catch (const cni::Error& e) {
    CHECK(e.details().size() < 300);
    CHECK(e.details().find("100000 elements") != std::string::npos);
  }
}
