// The loopback plugin's Go-compatible printer: the exact text encoding/json's MarshalIndent gives
// for libcni's result structs. The expected strings are what the reference plugins print (the
// integration test compares against the reference binary itself).
#include <doctest/doctest.h>

#include "plugins/loopback/go_result.h"

namespace lb = cni::loopback;
using ojson = nlohmann::ordered_json;

namespace {

cni::Result lo_result() {
  cni::Result r;
  r.interfaces = {{"lo", "00:00:00:00:00:00", std::nullopt, "/run/netns/x", "", ""}};
  r.ips = {{*cni::Prefix::parse("127.0.0.1/8"), std::nullopt, 0},
           {*cni::Prefix::parse("::1/128"), std::nullopt, 0}};
  return r;
}

cni::Result chained_result() {
  cni::Result r;
  r.interfaces = {{"cni0", "0a:58:0a:01:00:01", 1500, "", "", ""},
                  {"eth0", "0a:58:0a:01:00:03", 1400, "/run/netns/x", "/s", "0000:00:01.0"}};
  r.ips = {{*cni::Prefix::parse("10.1.0.5/16"), cni::IpAddr::parse("10.1.0.1"), 1},
           {*cni::Prefix::parse("fd00::5/64"), std::nullopt, std::nullopt}};
  cni::Route v4;
  v4.dst = *cni::Prefix::parse("0.0.0.0/0");
  v4.gw = cni::IpAddr::parse("10.1.0.1");
  v4.mtu = 1400;
  v4.priority = 0;
  v4.table = 0;
  cni::Route v6;
  v6.dst = *cni::Prefix::parse("::/0");
  r.routes = {v4, v6};
  r.dns.nameservers = {"10.1.0.1"};
  r.dns.search = {"a.test"};
  return r;
}

}  // namespace

TEST_CASE("loopback go_marshal_indent: layout as MarshalIndent(v, \"\", \"    \")") {
  ojson j;
  j["a"] = ojson::object();
  j["b"] = ojson::array();
  j["c"] = ojson::array({1, true, nullptr});
  j["d"] = {{"z", "y"}};
  CHECK(lb::go_marshal_indent(j) ==
        "{\n"
        "    \"a\": {},\n"
        "    \"b\": [],\n"
        "    \"c\": [\n"
        "        1,\n"
        "        true,\n"
        "        null\n"
        "    ],\n"
        "    \"d\": {\n"
        "        \"z\": \"y\"\n"
        "    }\n"
        "}");
  CHECK(lb::go_marshal_indent(ojson::object()) == "{}");
}

TEST_CASE("loopback go_marshal_indent: strings escaped as encoding/json does") {
  auto q = [](const std::string& s) { return lb::go_marshal_indent(ojson(s)); };
  CHECK(q("a\"b\\c") == R"("a\"b\\c")");
  CHECK(q("\n\r\t") == R"("\n\r\t")");
  // Go 1.19 has no short form for \b and \f.
  CHECK(q(std::string("\b\f\x01\x1f", 4)) == R"("\u0008\u000c\u0001\u001f")");
  CHECK(q("<a&b>") == R"("\u003ca\u0026b\u003e")");
  CHECK(q("\x7f") == "\"\x7f\"");
  CHECK(q("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(q("\xe2\x80\xa8\xe2\x80\xa9") == R"("\u2028\u2029")");
  // Invalid UTF-8, one U+FFFD per bad byte: a stray continuation byte, a truncated sequence,
  // an overlong form, a surrogate, past U+10FFFF.
  CHECK(q("\x80") == R"("\ufffd")");
  CHECK(q("a\xe2\x82") == R"("a\ufffd\ufffd")");
  CHECK(q("\xc0\xaf") == R"("\ufffd\ufffd")");
  CHECK(q("\xed\xa0\x80") == R"("\ufffd\ufffd\ufffd")");
  CHECK(q("\xf4\x90\x80\x80") == R"("\ufffd\ufffd\ufffd\ufffd")");
}

TEST_CASE("loopback go_type_of: the libcni struct of each version") {
  CHECK(lb::go_type_of("0.1.0") == lb::GoType::k020);
  CHECK(lb::go_type_of("0.2.0") == lb::GoType::k020);
  CHECK(lb::go_type_of("0.3.0") == lb::GoType::k040);
  CHECK(lb::go_type_of("0.3.1") == lb::GoType::k040);
  CHECK(lb::go_type_of("0.4.0") == lb::GoType::k040);
  CHECK(lb::go_type_of("1.0.0") == lb::GoType::k100);
  CHECK(lb::go_type_of("1.1.0") == lb::GoType::k110);
}

TEST_CASE("loopback go_result_text: lo's result as the reference prints it") {
  // The reference fills a 1.0.0 struct and labels it with the config's version.
  CHECK(lb::go_result_text(lo_result(), "0.3.1", lb::GoType::k100) ==
        "{\n"
        "    \"cniVersion\": \"0.3.1\",\n"
        "    \"interfaces\": [\n"
        "        {\n"
        "            \"name\": \"lo\",\n"
        "            \"mac\": \"00:00:00:00:00:00\",\n"
        "            \"sandbox\": \"/run/netns/x\"\n"
        "        }\n"
        "    ],\n"
        "    \"ips\": [\n"
        "        {\n"
        "            \"interface\": 0,\n"
        "            \"address\": \"127.0.0.1/8\"\n"
        "        },\n"
        "        {\n"
        "            \"interface\": 0,\n"
        "            \"address\": \"::1/128\"\n"
        "        }\n"
        "    ],\n"
        "    \"dns\": {}\n"
        "}");
}

TEST_CASE("loopback go_result_text: each struct's fields, order and omissions") {
  const cni::Result r = chained_result();
  auto parsed = [&](lb::GoType t, const char* v) {
    return ojson::parse(lb::go_result_text(r, v, t));
  };

  ojson j40 = parsed(lb::GoType::k040, "0.4.0");
  CHECK(j40.dump() ==
        R"({"cniVersion":"0.4.0","interfaces":[{"name":"cni0","mac":"0a:58:0a:01:00:01"},)"
        R"({"name":"eth0","mac":"0a:58:0a:01:00:03","sandbox":"/run/netns/x"}],)"
        R"("ips":[{"version":"4","interface":1,"address":"10.1.0.5/16","gateway":"10.1.0.1"},)"
        R"({"version":"6","address":"fd00::5/64"}],)"
        R"("routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},{"dst":"::/0"}],)"
        R"("dns":{"nameservers":["10.1.0.1"],"search":["a.test"]}})");

  // libcni 1.0 (the reference Debian ships) has none of the 1.1 fields.
  ojson j100 = parsed(lb::GoType::k100, "1.0.0");
  CHECK(j100.dump() ==
        R"({"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"0a:58:0a:01:00:01"},)"
        R"({"name":"eth0","mac":"0a:58:0a:01:00:03","sandbox":"/run/netns/x"}],)"
        R"("ips":[{"interface":1,"address":"10.1.0.5/16","gateway":"10.1.0.1"},)"
        R"({"address":"fd00::5/64"}],)"
        R"("routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},{"dst":"::/0"}],)"
        R"("dns":{"nameservers":["10.1.0.1"],"search":["a.test"]}})");

  // 1.1: mtu after mac, socketPath and pciID after sandbox; route ints omitted when 0,
  // table and scope (pointers in Go) kept when set.
  ojson j110 = parsed(lb::GoType::k110, "1.1.0");
  CHECK(j110["interfaces"][0].dump() == R"({"name":"cni0","mac":"0a:58:0a:01:00:01","mtu":1500})");
  CHECK(j110["interfaces"][1].dump() ==
        R"({"name":"eth0","mac":"0a:58:0a:01:00:03","mtu":1400,"sandbox":"/run/netns/x",)"
        R"("socketPath":"/s","pciID":"0000:00:01.0"})");
  CHECK(j110["routes"].dump() ==
        R"([{"dst":"0.0.0.0/0","gw":"10.1.0.1","mtu":1400,"table":0},{"dst":"::/0"}])");

  // 0.2.0: the first address of each family in its block, with that family's routes.
  ojson j20 = parsed(lb::GoType::k020, "0.2.0");
  CHECK(j20.dump() == R"({"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.5/16","gateway":"10.1.0.1",)"
                      R"("routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}]},)"
                      R"("ip6":{"ip":"fd00::5/64","routes":[{"dst":"::/0"}]},)"
                      R"("dns":{"nameservers":["10.1.0.1"],"search":["a.test"]}})");

  cni::Result empty;
  CHECK(lb::go_result_text(empty, "0.2.0", lb::GoType::k020) ==
        "{\n    \"cniVersion\": \"0.2.0\",\n    \"dns\": {}\n}");
}
