#include <doctest/doctest.h>

#include "common/error.h"
#include "plugins/dns-sidecar/config.h"

using cni::json;
using cni::dns::Config;

namespace {

Config parse(const std::string& text, const std::string& cni_args = "") {
  return Config::parse(cni::NetConf::parse(text), cni::CniArgs::parse(cni_args));
}

// The Error a parse throws (code and text), or code 0.
std::pair<int, std::string> error_of(const std::string& text, const std::string& cni_args = "") {
  try {
    parse(text, cni_args);
  } catch (const cni::Error& e) {
    return {e.code(), e.what()};
  }
  return {0, ""};
}

const char* kBase = R"({"cniVersion":"1.1.0","name":"net1","type":"dns-sidecar")";

std::string conf(const std::string& extra) { return std::string(kBase) + extra + "}"; }

}  // namespace

TEST_CASE("dns config: defaults") {
  Config c = parse(conf(""));
  CHECK(c.network == "net1");
  CHECK(c.domain == "tether.internal");
  CHECK(c.state_dir == "/run/tether/dns-sidecar");
  CHECK(c.socket == "/run/tether/dns-sidecar/control.sock");
  CHECK(c.ttl == 0);
  CHECK(!c.port);
  CHECK(!c.internal);
  CHECK(c.name.empty());
  CHECK(!c.valid_attachments);
}

TEST_CASE("dns config: keys, podman's dnsname entry and capabilities") {
  Config c = parse(conf(R"(,"domainName":"DNS.Podman","upstreams":["10.0.0.1"],
      "stateDir":"/s","ttl":600,"port":5353,"internal":true,
      "runtimeConfig":{"aliases":{"net1":["web","api"],"net2":["other"]},
                       "dns":{"Servers":["10.0.0.2"],"Searches":["example.com"],
                              "Options":["ndots:1"]}})"),
                   "IgnoreUnknown=1;K8S_POD_NAME=ctr1;K8S_POD_NAMESPACE=ns");
  CHECK(c.domain == "dns.podman");
  CHECK(c.upstreams == std::vector<std::string>{"10.0.0.1"});
  CHECK(c.socket == "/s/control.sock");
  CHECK(c.ttl == 600);
  CHECK(*c.port == 5353);
  CHECK(c.internal);
  CHECK(c.name == "ctr1");
  CHECK(c.aliases == std::vector<std::string>{"web", "api"});
  CHECK(c.container_upstreams == std::vector<std::string>{"10.0.0.2"});
  CHECK(c.searches == std::vector<std::string>{"example.com"});
  CHECK(c.options == std::vector<std::string>{"ndots:1"});
}

TEST_CASE("dns config: args.cni and precedence CNI_ARGS < args < runtimeConfig") {
  Config c = parse(conf(R"(,"args":{"cni":{"name":"fromargs","hostname":"h1",
      "aliases":["a1"],"containerAliases":["me","db=postgres"]}},
      "runtimeConfig":{"aliases":["r1"]})"),
                   "K8S_POD_NAME=fromcniargs");
  CHECK(c.name == "fromargs");
  CHECK(c.hostname == "h1");
  CHECK(c.aliases == std::vector<std::string>{"r1"});
  CHECK(c.container_aliases == std::vector<std::string>{"me", "db=postgres"});
  Config only_args = parse(conf(R"(,"args":{"cni":{"aliases":["a1"]}})"));
  CHECK(only_args.aliases == std::vector<std::string>{"a1"});
  // A map without our network means no aliases.
  CHECK(parse(conf(R"(,"runtimeConfig":{"aliases":{"other":["x"]}})")).aliases.empty());
}

TEST_CASE("dns config: GC attachments, both key spellings") {
  auto c = parse(conf(R"(,"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}])"));
  REQUIRE(c.valid_attachments);
  CHECK(c.valid_attachments->at(0) == cni::Attachment{"c1", "eth0"});
  auto old = parse(conf(R"(,"cni.dev/attachments":[])"));
  REQUIRE(old.valid_attachments);
  CHECK(old.valid_attachments->empty());
}

TEST_CASE("dns config: errors are code 7 naming the key") {
  struct Case {
    const char* extra;
    const char* cni_args;
    const char* text;
  };
  for (const Case& k : {
           Case{R"(,"domainName":"bad domain")", "", "domainName"},
           Case{R"(,"domainName":5)", "", "domainName"},
           Case{R"(,"upstreams":["nope"])", "", "upstreams"},
           Case{R"(,"ttl":-1)", "", "ttl"},
           Case{R"(,"port":0)", "", "port"},
           Case{R"(,"port":70000)", "", "port"},
           Case{R"(,"internal":"yes")", "", "internal"},
           Case{R"(,"stateDir":"relative")", "", "stateDir"},
           Case{"", "K8S_POD_NAME=bad/name", "container name"},
           Case{R"(,"runtimeConfig":{"aliases":["ok","b@d"]})", "", "aliases"},
           Case{R"(,"runtimeConfig":{"aliases":"x"})", "", "aliases"},
           Case{R"(,"runtimeConfig":{"dns":{"servers":["x"]}})", "", "runtimeConfig.dns.servers"},
           Case{R"(,"args":{"cni":{"containerAliases":["a=b c"]}})", "", "containerAliases"},
           Case{R"(,"args":{"cni":{"hostname":"-"}})", "", ""},
       }) {
    // Not a structured binding: clang 14 cannot capture those in doctest's lambdas.
    std::pair<int, std::string> err = error_of(conf(k.extra), k.cni_args);
    int code = err.first;
    std::string what = err.second;
    if (std::string(k.extra).find("hostname") != std::string::npos) {
      CHECK_MESSAGE(code == 0, k.extra);  // "-" is a valid (if odd) label
      continue;
    }
    CHECK_MESSAGE(code == cni::kErrInvalidConfig, k.extra);
    CHECK_MESSAGE(what.find(k.text) != std::string::npos, what);
  }
}
