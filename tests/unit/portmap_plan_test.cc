#include <doctest/doctest.h>

#include "common/error.h"
#include "plugins/portmap/plan.h"
#include "plugins/portmap/portmap.h"
#include "plugins/portmap/state.h"

using cni::json;
using cni::nft::Bytes;
using cni::portmap::Config;
using cni::portmap::ContainerAddrs;
using cni::portmap::Group;
using cni::portmap::Plan;

namespace {

Config parse(const std::string& keys, const std::string& mappings) {
  std::string text = R"({"cniVersion":"1.0.0","name":"n","type":"portmap")" +
                     (keys.empty() ? "" : "," + keys) + R"(,"runtimeConfig":{"portMappings":[)" +
                     mappings + "]}}";
  return Config::parse(cni::NetConf::parse(text));
}

ContainerAddrs addrs(const char* v4, const char* v6) {
  ContainerAddrs a;
  if (v4) a.v4 = cni::Prefix::parse(v4);
  if (v6) a.v6 = cni::Prefix::parse(v6);
  return a;
}

const Group* find(const Plan& p, const std::string& set) {
  for (const Group& g : p.groups) {
    if (g.keys.front().set == set) return &g;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("portmap plan: a wildcard tcp port, both families") {
  Plan p = make_plan(parse("", R"({"hostPort":8080,"containerPort":80})"),
                     addrs("10.1.0.5/24", "fd00::5/64"));
  // dnat4_any, dnat6_any, masq4_24, masq6_64.
  REQUIRE(p.groups.size() == 4);
  const Group* g = find(p, "dnat4_any");
  REQUIRE(g);
  CHECK(g->exclusive);
  CHECK(g->what == "tcp *:8080 (IPv4) -> 10.1.0.5:80");
  REQUIRE(g->keys.size() == 1);
  // meta l4proto . th dport : ip . port, each field in its own 32-bit register.
  CHECK(g->keys[0].element.key == Bytes{6, 0, 0, 0, 0x1f, 0x90, 0, 0});
  CHECK(g->keys[0].element.data == Bytes{10, 1, 0, 5, 0, 80, 0, 0});
  // Unrestricted: nothing in the restrict and allow sets.
  CHECK(g->members.empty());
  const Group* m = find(p, "masq4_24");
  REQUIRE(m);
  CHECK_FALSE(m->exclusive);
  // container . its subnet's network, and container . 127.0.0.0 (in the /8 set) for localhost:
  // exact keys, no interval.
  CHECK(m->keys[0].element.key == Bytes{10, 1, 0, 5, 10, 1, 0, 0});
  CHECK(m->keys[0].element.key_end.empty());
  REQUIRE(m->members.size() == 1);
  CHECK(m->members[0].set == "masq4_8");
  CHECK(m->members[0].element.key == Bytes{10, 1, 0, 5, 127, 0, 0, 0});
  CHECK(m->members[0].element.key_end.empty());
  const Group* m6 = find(p, "masq6_64");
  REQUIRE(m6);
  CHECK(m6->members.empty());  // no route_localnet for ::1
  CHECK(p.udp.empty());
  CHECK(p.route_localnet);
}

TEST_CASE("portmap plan: host address, range, udp") {
  Plan p = make_plan(parse("", R"({"hostPort":9000,"containerPort":90,"protocol":"udp",
                                   "hostIP":"192.0.2.2","range":3})"),
                     addrs("10.1.0.5/24", "fd00::5/64"));
  const Group* g = find(p, "dnat4_ip");
  REQUIRE(g);
  CHECK(g->what == "udp 192.0.2.2:9000-9002 -> 10.1.0.5:90-92");
  REQUIRE(g->keys.size() == 3);
  CHECK(g->keys[2].element.key == Bytes{192, 0, 2, 2, 17, 0, 0, 0, 0x23, 0x2a, 0, 0});
  CHECK(g->keys[2].element.data == Bytes{10, 1, 0, 5, 0, 92, 0, 0});
  CHECK(g->members.empty());  // unrestricted
  // The IPv4 host address is skipped for IPv6.
  CHECK_FALSE(find(p, "dnat6_ip"));
  CHECK_FALSE(find(p, "dnat6_any"));
  CHECK_FALSE(find(p, "masq6_64"));
  REQUIRE(p.udp.size() == 1);
  CHECK(p.udp[0] == cni::portmap::FlushTarget{4, 9000, 3, cni::IpAddr::parse("192.0.2.2")});
}

TEST_CASE("portmap plan: source restrictions per family, nested prefixes merged") {
  Plan p = make_plan(parse(R"("allowedSources":["10.0.0.0/8","10.1.0.0/16","fd00::1"])",
                           R"({"hostPort":80,"containerPort":80},
               {"hostPort":81,"containerPort":81,"sourceRanges":["192.168.0.0/24"]})"),
                     addrs("10.1.0.5/24", "fd00::5/64"));
  int found = 0;
  for (const Group& g : p.groups) {
    if (g.what == "tcp *:80 (IPv4) -> 10.1.0.5:80") {
      // The key in restrict4_any, then one source range: 10.1/16 lies inside 10/8.
      REQUIRE(g.members.size() == 2);
      CHECK(g.members[0].set == "restrict4_any");
      CHECK(g.members[0].element.key == Bytes{6, 0, 0, 0, 0, 80, 0, 0});
      CHECK(g.members[0].element.key_end.empty());
      CHECK(g.members[1].set == "allow4_any");
      CHECK(g.members[1].element.key == Bytes{6, 0, 0, 0, 0, 80, 0, 0, 10, 0, 0, 0});
      CHECK(g.members[1].element.key_end == Bytes{6, 0, 0, 0, 0, 80, 0, 0, 10, 255, 255, 255});
      ++found;
    } else if (g.what == "tcp *:80 (IPv6) -> [fd00::5]:80") {
      REQUIRE(g.members.size() == 2);
      CHECK(g.members[0].set == "restrict6_any");
      CHECK(g.members[1].element.key == g.members[1].element.key_end);  // a single host
      ++found;
    } else if (g.what == "tcp *:81 (IPv6) -> [fd00::5]:81") {
      // Its own list names no IPv6 source: restricted, and closed to IPv6.
      REQUIRE(g.members.size() == 1);
      CHECK(g.members[0].set == "restrict6_any");
      ++found;
    }
  }
  CHECK(found == 3);
}

TEST_CASE("portmap plan: masquerade follows snat and masqAll") {
  auto has_masq = [](const Plan& p) {
    for (const Group& g : p.groups) {
      if (cni::portmap::masq_set_len(g.keys.front().set)) return true;
    }
    return false;
  };
  CHECK_FALSE(has_masq(make_plan(parse(R"("snat":false)", R"({"hostPort":80,"containerPort":80})"),
                                 addrs("10.1.0.5/24", "fd00::5/64"))));
  Plan all = make_plan(parse(R"("masqAll":true)", R"({"hostPort":80,"containerPort":80})"),
                       addrs("10.1.0.5/24", nullptr));
  const Group* m = find(all, "masq4_0");
  REQUIRE(m);
  CHECK(m->keys[0].element.key == Bytes{10, 1, 0, 5, 0, 0, 0, 0});
  CHECK(m->keys[0].element.key_end.empty());
  CHECK(m->members.empty());
  // No address of a family, nothing for it.
  Plan none =
      make_plan(parse("", R"({"hostPort":80,"containerPort":80})"), addrs(nullptr, nullptr));
  CHECK(none.groups.empty());
}

TEST_CASE("portmap plan: the same host port twice in one request is code 7") {
  try {
    make_plan(parse("", R"({"hostPort":80,"containerPort":80},
                           {"hostPort":78,"containerPort":1,"range":3,"hostIP":"0.0.0.0"})"),
              addrs("10.1.0.5/24", nullptr));
    FAIL("accepted");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrInvalidConfig);
    CHECK(e.details().find("portMappings[1]") != std::string::npos);
  }
  // Different protocols or addresses are fine.
  CHECK_NOTHROW(make_plan(parse("", R"({"hostPort":80,"containerPort":80},
                                       {"hostPort":80,"containerPort":80,"protocol":"udp"},
                                       {"hostPort":80,"containerPort":80,"hostIP":"10.0.0.1"})"),
                          addrs("10.1.0.5/24", nullptr)));
}

TEST_CASE("portmap plan: disjoint prefixes") {
  auto p = [](const char* s) { return *cni::Prefix::parse(s); };
  auto out = cni::portmap::disjoint(
      {p("10.1.2.3/16"), p("10.0.0.0/8"), p("192.168.1.0/24"), p("192.168.1.0/24")});
  REQUIRE(out.size() == 2);
  CHECK(out[0].str() == "10.0.0.0/8");
  CHECK(out[1].str() == "192.168.1.0/24");
}

TEST_CASE("portmap state: JSON round trip") {
  Plan p = make_plan(parse(R"("allowedSources":["10.0.0.0/8"])",
                           R"({"hostPort":53,"containerPort":53,"protocol":"udp,tcp","range":2})"),
                     addrs("10.1.0.5/24", "fd00::5/64"));
  cni::portmap::State s{{"net", "cid", "eth0"}, "tether-portmap", p.groups, p.udp};
  json j = s.to_json();
  cni::portmap::State back = cni::portmap::State::from_json(json::parse(j.dump()), "x");
  CHECK(back.attachment.container_id == "cid");
  CHECK(back.table == "tether-portmap");
  CHECK(back.groups == s.groups);
  CHECK(back.udp == s.udp);
  CHECK(cni::portmap::state_store("/run/x").path(s.attachment) == "/run/x/net/cid:eth0.json");
  try {
    cni::portmap::State::from_json(json::parse(R"({"network":"n"})"), "/p");
    FAIL("accepted");
  } catch (const cni::Error& e) {
    CHECK(e.code() == cni::kErrIo);
    CHECK(e.msg().find("/p") != std::string::npos);
  }
  // Numbers out of their field's range, of the wrong kind, or missing: corrupt, never truncated
  // (a port of 65589 read back as 53 would flush the wrong conntrack entries).
  for (const char* bad :
       {R"({"family":4,"port":65589,"count":1})", R"({"family":4,"port":-1,"count":1})",
        R"({"family":4,"port":53.5,"count":1})", R"({"family":5,"port":53,"count":1})",
        R"({"family":4,"port":"53","count":1})", R"({"family":4,"port":53,"count":0})",
        R"({"family":4,"count":1})", R"(7)"}) {
    CAPTURE(bad);
    json broken = j;
    broken["udp"] = json::array({json::parse(bad)});
    CHECK_THROWS_AS(cni::portmap::State::from_json(broken, "/p"), cni::Error);
  }
}

TEST_CASE("portmap layout tag: conditions change it") {
  Config plain = parse("", "");
  Config cond = parse(R"("conditionsV4":["ip saddr 10.0.0.0/8"])", "");
  Config cond2 = parse(R"("conditionsV4":["ip saddr 10.0.0.0/9"])", "");
  CHECK(cni::portmap::layout_tag(plain) == "tether-portmap layout 2");
  CHECK(cni::portmap::layout_tag(cond) != cni::portmap::layout_tag(plain));
  CHECK(cni::portmap::layout_tag(cond) != cni::portmap::layout_tag(cond2));
  CHECK(cni::portmap::layout_tag(cond).size() < 128);
}

TEST_CASE("portmap plan: masquerade set names") {
  using cni::portmap::masq_set;
  using cni::portmap::masq_set_len;
  CHECK(masq_set(false, 24) == "masq4_24");
  CHECK(masq_set(true, 0) == "masq6_0");
  bool v6 = false;
  CHECK(masq_set_len("masq6_128", &v6) == 128);
  CHECK(v6);
  CHECK(masq_set_len("masq4_32") == 32);
  for (const char* bad : {"masq4", "masq4_", "masq4_33", "masq6_129", "masq4_08", "masq4_-1",
                          "masq4_2x", "dnat4_any", "masq4_1000"}) {
    CAPTURE(bad);
    CHECK_FALSE(masq_set_len(bad));
  }
}
