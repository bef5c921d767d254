// plugin_main driven in-process: injected environment, stdin and stdout, one case per code path.
#include "common/skel.h"

#include <doctest/doctest.h>

#include <map>
#include <sstream>

#include "common/error.h"

namespace {

struct Run {
  int rc;
  std::string out;
  std::string err;
  cni::json json() const { return cni::json::parse(out); }
};

struct Fixture {
  std::map<std::string, std::string> env = {{"CNI_COMMAND", "ADD"},
                                            {"CNI_CONTAINERID", "ctr-1"},
                                            {"CNI_NETNS", "/run/netns/none"},
                                            {"CNI_IFNAME", "eth0"},
                                            {"CNI_PATH", "/opt/cni/bin"}};
  std::string stdin_data = R"({"cniVersion":"1.1.0","name":"net1","type":"t"})";
  std::vector<std::string> called;
  int stdin_reads = 0;

  cni::Verbs verbs() {
    auto note = [this](const cni::CmdArgs& a) { called.push_back(a.command); };
    return {
        [this](const cni::CmdArgs& a) {
          called.push_back("ADD");
          cni::Result r;
          r.interfaces.push_back({a.ifname, "aa:bb:cc:dd:ee:ff", 1500, a.netns, "", ""});
          r.ips.push_back({*cni::Prefix::parse("10.0.0.2/24"), cni::IpAddr::parse("10.0.0.1"), 0});
          return r;
        },
        note, note, note, note};
  }

  Run run() { return run(verbs()); }

  Run run(const cni::Verbs& v) {
    std::ostringstream out;
    std::ostringstream err;
    cni::Io io{[this](const char* name) -> std::optional<std::string> {
                 auto it = env.find(name);
                 return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
               },
               [this] {
                 ++stdin_reads;
                 return stdin_data;
               },
               [&out](std::string_view s) { out << s; }, [&err](std::string_view s) { err << s; }};
    int rc = cni::plugin_main(v, "test-plugin v0", io);
    return {rc, out.str(), err.str()};
  }
};

void expect_error(const Run& r, int code, const std::string& msg_part) {
  CHECK(r.rc == 1);
  auto j = r.json();
  CHECK(j["code"] == code);
  CHECK(j.contains("cniVersion"));
  std::string text = j["msg"].get<std::string>() + " " + j.value("details", "");
  CHECK_MESSAGE(text.find(msg_part) != std::string::npos, text);
}

}  // namespace

TEST_CASE("skel: ADD prints the result in the config's version") {
  Fixture f;
  auto r = f.run();
  REQUIRE(r.rc == 0);
  auto j = r.json();
  CHECK(j["cniVersion"] == "1.1.0");
  CHECK(j["ips"][0]["address"] == "10.0.0.2/24");
  CHECK(j["ips"][0]["interface"] == 0);
  CHECK_FALSE(j["ips"][0].contains("version"));
  CHECK(f.called == std::vector<std::string>{"ADD"});

  f.stdin_data = R"({"cniVersion":"0.3.1","name":"net1","type":"t"})";
  j = f.run().json();
  CHECK(j["cniVersion"] == "0.3.1");
  CHECK(j["ips"][0]["version"] == "4");
}

TEST_CASE("skel: no CNI_COMMAND prints the about line on stderr and exits 0") {
  Fixture f;
  f.env.erase("CNI_COMMAND");
  auto r = f.run();
  CHECK(r.rc == 0);
  CHECK(r.out.empty());
  CHECK(r.err.find("test-plugin v0") != std::string::npos);
  CHECK(r.err.find("1.1.0") != std::string::npos);
}

TEST_CASE("skel: VERSION ignores stdin") {
  Fixture f;
  f.env = {{"CNI_COMMAND", "VERSION"}};
  f.stdin_data = "not json";
  auto r = f.run();
  CHECK(r.rc == 0);
  CHECK(f.stdin_reads == 0);
  auto j = r.json();
  CHECK(j["cniVersion"] == "1.1.0");
  CHECK(j["supportedVersions"] == cni::json::array({"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}));
}

TEST_CASE("skel: environment validation") {
  struct Case {
    const char* what;
    std::string command;
    std::map<std::string, std::optional<std::string>> changes;
    int code;
    const char* text;
  };
  const Case cases[] = {
      {"unknown command", "FOO", {}, 4, "unknown CNI_COMMAND: FOO"},
      {"missing netns on ADD", "ADD", {{"CNI_NETNS", std::nullopt}}, 4, "[CNI_NETNS]"},
      {"missing several",
       "ADD",
       {{"CNI_IFNAME", std::nullopt}, {"CNI_PATH", std::nullopt}},
       4,
       "[CNI_IFNAME,CNI_PATH]"},
      {"missing container id", "ADD", {{"CNI_CONTAINERID", std::nullopt}}, 4, "[CNI_CONTAINERID]"},
      {"empty container id", "ADD", {{"CNI_CONTAINERID", ""}}, 3, "missing containerID"},
      {"bad container id",
       "ADD",
       {{"CNI_CONTAINERID", "-abc"}},
       4,
       "invalid characters in containerID"},
      {"container id with slash", "DEL", {{"CNI_CONTAINERID", "a/b"}}, 4, "containerID"},
      {"ifname too long", "ADD", {{"CNI_IFNAME", "abcdefghijklmnop"}}, 4, "too long"},
      {"ifname with slash", "ADD", {{"CNI_IFNAME", "eth/0"}}, 4, "interface name contains"},
      {"ifname with colon", "CHECK", {{"CNI_IFNAME", "eth:0"}}, 4, "interface name contains"},
      {"ifname with space", "ADD", {{"CNI_IFNAME", "eth 0"}}, 4, "interface name contains"},
      {"ifname dot", "ADD", {{"CNI_IFNAME", "."}}, 4, "interface name is . or .."},
      {"ifname dotdot", "ADD", {{"CNI_IFNAME", ".."}}, 4, "interface name is . or .."},
      {"ifname empty", "ADD", {{"CNI_IFNAME", ""}}, 4, "[CNI_IFNAME]"},
      {"missing path on GC", "GC", {{"CNI_PATH", std::nullopt}}, 4, "[CNI_PATH]"},
      {"malformed CNI_ARGS", "ADD", {{"CNI_ARGS", "IP=1.2.3.4;garbage"}}, 4, "invalid pair"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    Fixture f;
    f.env["CNI_COMMAND"] = c.command;
    for (const auto& [k, v] : c.changes) {
      if (v) {
        f.env[k] = *v;
      } else {
        f.env.erase(k);
      }
    }
    expect_error(f.run(), c.code, c.text);
    CHECK(f.called.empty());
  }
}

TEST_CASE("skel: DEL needs no netns; GC and STATUS need no container") {
  Fixture f;
  f.env["CNI_COMMAND"] = "DEL";
  f.env.erase("CNI_NETNS");
  CHECK(f.run().rc == 0);
  for (const char* cmd : {"GC", "STATUS"}) {
    Fixture g;
    g.env = {{"CNI_COMMAND", cmd}, {"CNI_PATH", "/opt/cni/bin"}};
    auto r = g.run();
    CHECK(r.rc == 0);
    CHECK(r.out.empty());
    CHECK(g.called == std::vector<std::string>{cmd});
  }
}

TEST_CASE("skel: config decoding and validation") {
  struct Case {
    const char* what;
    std::string conf;
    int code;
    const char* text;
  };
  const Case cases[] = {
      {"not json", "{nope", 6, "not valid JSON"},
      {"not an object", "[1,2]", 6, "not a JSON object"},
      {"empty stdin", "", 6, "not valid JSON"},
      {"missing name", R"({"cniVersion":"1.0.0","type":"t"})", 7, "\"name\""},
      {"missing type", R"({"cniVersion":"1.0.0","name":"n"})", 7, "\"type\""},
      {"name of wrong type", R"({"cniVersion":"1.0.0","name":5,"type":"t"})", 7,
       "name: expected a string"},
      {"version of wrong type", R"({"cniVersion":1,"name":"n","type":"t"})", 7, "cniVersion"},
      {"bad network name", R"({"cniVersion":"1.0.0","name":"a b","type":"t"})", 7, "network name"},
      {"ipam not an object", R"({"cniVersion":"1.0.0","name":"n","type":"t","ipam":[]})", 7,
       "ipam"},
      {"dns of wrong shape",
       R"({"cniVersion":"1.0.0","name":"n","type":"t","dns":{"nameservers":"x"}})", 7,
       "nameservers"},
      {"bad prevResult",
       R"({"cniVersion":"1.0.0","name":"n","type":"t","prevResult":{"ips":[{"address":"x"}]}})", 6,
       "prevResult"},
      {"unsupported version", R"({"cniVersion":"0.2.0","name":"n","type":"t"})", 1,
       "config is \"0.2.0\", plugin supports [0.3.0 0.3.1 0.4.0 1.0.0 1.1.0]"},
      {"no version means 0.1.0", R"({"name":"n","type":"t"})", 1, "config is \"0.1.0\""},
      {"future version", R"({"cniVersion":"9.9.9","name":"n","type":"t"})", 1, "9.9.9"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    Fixture f;
    f.stdin_data = c.conf;
    expect_error(f.run(), c.code, c.text);
    CHECK(f.called.empty());
  }
}

TEST_CASE("skel: verbs refused below the version that defines them") {
  struct Case {
    const char* command;
    const char* version;
    bool allowed;
  };
  const Case cases[] = {{"CHECK", "0.3.1", false},  {"CHECK", "0.4.0", true},
                        {"STATUS", "1.0.0", false}, {"STATUS", "1.1.0", true},
                        {"GC", "1.0.0", false},     {"GC", "1.1.0", true}};
  for (const auto& c : cases) {
    CAPTURE(c.command);
    CAPTURE(c.version);
    Fixture f;
    f.env["CNI_COMMAND"] = c.command;
    f.stdin_data = std::string(R"({"cniVersion":")") + c.version + R"(","name":"n","type":"t"})";
    auto r = f.run();
    if (c.allowed) {
      CHECK(r.rc == 0);
    } else {
      expect_error(r, 1, std::string("does not allow ") + c.command);
    }
  }
}

TEST_CASE("skel: a verb's Error becomes the error JSON, other exceptions code 999") {
  Fixture f;
  cni::Verbs v = f.verbs();
  v.add = [](const cni::CmdArgs&) -> cni::Result {
    throw cni::Error(cni::kErrTryAgainLater, "busy", "later");
  };
  std::ostringstream out, err;
  cni::Io io{[&f](const char* n) -> std::optional<std::string> {
               auto it = f.env.find(n);
               return it == f.env.end() ? std::nullopt : std::optional<std::string>(it->second);
             },
             [&f] { return f.stdin_data; }, [&out](std::string_view s) { out << s; },
             [&err](std::string_view s) { err << s; }};
  CHECK(cni::plugin_main(v, "t", io) == 1);
  auto j = cni::json::parse(out.str());
  CHECK(j ==
        cni::json{{"cniVersion", "1.1.0"}, {"code", 11}, {"msg", "busy"}, {"details", "later"}});

  v.add = [](const cni::CmdArgs&) -> cni::Result { throw std::runtime_error("boom"); };
  out.str("");
  CHECK(cni::plugin_main(v, "t", io) == 1);
  j = cni::json::parse(out.str());
  CHECK(j["code"] == 999);
  CHECK(j["msg"] == "boom");
}

TEST_CASE("skel: running inside CNI_NETNS is refused unless overridden") {
  Fixture f;
  f.env["CNI_NETNS"] = "/proc/self/ns/net";
  expect_error(f.run(), 8, "should not be the same");
  f.env["CNI_NETNS_OVERRIDE"] = "1";
  CHECK(f.run().rc == 0);
}

TEST_CASE("skel: name validation helpers") {
  CHECK(cni::valid_container_id("a"));
  CHECK(cni::valid_container_id("A0_.-x"));
  CHECK_FALSE(cni::valid_container_id(""));
  CHECK_FALSE(cni::valid_container_id("_a"));
  CHECK_FALSE(cni::valid_container_id("a:b"));
  CHECK_FALSE(cni::invalid_ifname_reason("eth0"));
  CHECK_FALSE(cni::invalid_ifname_reason("abcdefghijklmno"));
  CHECK(cni::invalid_ifname_reason("abcdefghijklmnop"));
}

TEST_CASE("skel: a plugin's own version list decides VERSION and what it accepts") {
  Fixture f;
  cni::Verbs v = f.verbs();
  v.versions = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  f.stdin_data = R"({"cniVersion":"0.2.0","name":"n","type":"t"})";
  auto r = f.run(v);
  REQUIRE(r.rc == 0);
  CHECK(r.json()["cniVersion"] == "0.2.0");
  // Without the list, 0.2.0 is refused: the other plugins speak 0.3.0 and later.
  expect_error(f.run(), 1, "incompatible CNI versions");

  f.env = {{"CNI_COMMAND", "VERSION"}};
  CHECK(f.run(v).json()["supportedVersions"] == cni::json(v.versions));
}

TEST_CASE("skel: a plugin's printer writes ADD's stdout; errors stay the error JSON") {
  Fixture f;
  cni::Verbs v = f.verbs();
  v.print = [](const cni::Result& r, const cni::CmdArgs& a) {
    return a.conf.cni_version + " " + r.ips.at(0).address.str();
  };
  auto r = f.run(v);
  CHECK(r.rc == 0);
  CHECK(r.out == "1.1.0 10.0.0.2/24");
  f.stdin_data = R"({"cniVersion":"9.9.9","name":"n","type":"t"})";
  r = f.run(v);
  CHECK(r.rc == 1);
  CHECK(r.json()["code"] == 1);
}

TEST_CASE("skel: outside bytes that are not UTF-8 reach the error JSON escaped, never abort") {
  // Each of these aborted the process: nlohmann's dump() threw type_error 316 from inside the
  // catch block that prints the error.
  Fixture f;
  f.env["CNI_CONTAINERID"] = "\xff\xfe";
  auto r = f.run();
  expect_error(r, 4, "invalid characters in containerID");
  CHECK(r.json()["details"] == "\\xff\\xfe");

  f = Fixture{};
  f.env["CNI_COMMAND"] = "AD\xc3";
  r = f.run();
  expect_error(r, 4, "unknown CNI_COMMAND: AD\\xc3");

  f = Fixture{};
  f.env["CNI_ARGS"] = "a\xff";
  expect_error(f.run(), 4, "invalid pair \"a\\xff\"");

  f = Fixture{};
  f.env["CNI_IFNAME"] = "e\xe2\x82";
  expect_error(f.run(), 4, "not valid UTF-8");
  f = Fixture{};
  f.env["CNI_NETNS"] = "/run/netns/\xff";
  expect_error(f.run(), 4, "CNI_NETNS is not valid UTF-8");

  // A verb's own message with a bad byte (a config value cut in the middle of a character).
  f = Fixture{};
  cni::Verbs v = f.verbs();
  v.add = [](const cni::CmdArgs&) -> cni::Result {
    throw cni::Error(cni::kErrInvalidConfig, "bad name", std::string("caf\xc3"));
  };
  r = f.run(v);
  expect_error(r, 7, "caf\\xc3");
  v.add = [](const cni::CmdArgs&) -> cni::Result { throw std::runtime_error("raw \x80 byte"); };
  expect_error(f.run(v), 999, "raw \\x80 byte");
  v.add = [](const cni::CmdArgs&) -> cni::Result { throw 42; };
  expect_error(f.run(v), 999, "internal error");
}

TEST_CASE("skel: network names and container IDs longer than a file name can be are refused") {
  Fixture f;
  f.stdin_data = R"({"cniVersion":"1.1.0","type":"t","name":")" + std::string(1 << 20, 'a') + "\"}";
  expect_error(f.run(), 7, "network name is too long");
  f = Fixture{};
  f.env["CNI_CONTAINERID"] = std::string(201, 'c');
  expect_error(f.run(), 4, "containerID is too long");
  f.env["CNI_CONTAINERID"] = std::string(200, 'c');
  CHECK(f.run().rc == 0);
}

TEST_CASE("skel: an error code is never zero or negative") {
  Fixture f;
  cni::Verbs v = f.verbs();
  v.add = [](const cni::CmdArgs&) -> cni::Result { throw cni::Error(-1, "from a helper"); };
  expect_error(f.run(v), 999, "from a helper");
}

TEST_CASE("skel: a config nested deeper than the limit is error 7 before anything recurses") {
  Fixture f;
  // 10,000 levels overflowed the stack in dump() (an error message quotes the value) and in the
  // recursive copy of "ipam"/"args".
  for (const char* key : {"args", "ipam", "x"}) {
    f.stdin_data = std::string(R"({"cniVersion":"1.1.0","name":"n","type":"t",")") + key +
                   "\":" + std::string(10000, '[') + std::string(10000, ']') + "}";
    expect_error(f.run(), 7, "nested too deeply");
  }
  // Exactly at the limit is fine (the config object itself is level 1).
  f.stdin_data = R"({"cniVersion":"1.1.0","name":"n","type":"t","x":)" +
                 std::string(cni::kMaxJsonDepth - 1, '[') +
                 std::string(cni::kMaxJsonDepth - 1, ']') + "}";
  CHECK(f.run().rc == 0);
  // Brackets inside strings do not count; escaped quotes do not end a string.
  f.stdin_data =
      R"({"cniVersion":"1.1.0","name":"n","type":"t","x":"\"[[[[)" + std::string(100, '[') + "\"}";
  CHECK(f.run().rc == 0);
}
