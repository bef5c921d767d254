// The index updated record by record: the same answers as one built from scratch, records of
// several nodes side by side, and the cache stamps that retire exactly the touched scopes.
#include <doctest/doctest.h>

#include <algorithm>

#include "plugins/dns-sidecar/lookup.h"

using cni::IpAddr;
using cni::dns::Index;
using cni::dns::Record;
using cni::dns::Resolution;

namespace {

IpAddr ip(const char* text) { return *IpAddr::parse(text); }

Record rec(const char* net, const char* node, const char* cid, const char* name, const char* addr,
           const char* gw = nullptr) {
  Record r;
  r.key = {{net, cid, "eth0"}, node};
  r.name = name;
  r.addresses = {*cni::Prefix::parse(addr)};
  if (gw) r.gateways = {ip(gw)};
  r.net.domain = "test.internal";
  return r;
}

std::vector<std::string> addrs(const Index& ix, const char* from, const char* name) {
  auto scope = ix.scope_for(ip(from));
  if (!scope) return {"<no scope>"};
  Resolution res = ix.resolve(*scope, name);
  std::vector<std::string> out;
  for (const auto& a : res.addresses) out.push_back(a.str());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("dns index: a name on several nodes answers every address; removal keeps the rest") {
  Index ix(53);
  ix.add(rec("n", "h1", "c1", "web", "10.1.1.2/16", "10.1.1.1"));
  ix.add(rec("n", "h2", "c1", "web", "10.1.2.2/16"), /*local=*/false);
  ix.add(rec("n", "h3", "c9", "db", "10.1.3.2/16"), false);
  CHECK(addrs(ix, "10.1.1.2", "web") == std::vector<std::string>{"10.1.1.2", "10.1.2.2"});
  CHECK(addrs(ix, "10.1.1.2", "db.test.internal") == std::vector<std::string>{"10.1.3.2"});
  // Same container ID on two nodes: two containers, each its own scope.
  REQUIRE(ix.scope_for(ip("10.1.2.2")));
  CHECK(ix.scope_for(ip("10.1.2.2"))->container != ix.scope_for(ip("10.1.1.2"))->container);
  // Only the local record's gateway is listened on.
  REQUIRE(ix.listeners().size() == 1);
  CHECK(ix.listeners().begin()->first.addr == ip("10.1.1.1"));

  CHECK(ix.remove({{"n", "c1", "eth0"}, "h2"}));
  CHECK(!ix.remove({{"n", "c1", "eth0"}, "h2"}));
  CHECK(addrs(ix, "10.1.1.2", "web") == std::vector<std::string>{"10.1.1.2"});
  CHECK(ix.resolve(*ix.scope_for(ip("10.1.1.2")), "ghost.test.internal").kind ==
        Resolution::Kind::kNxDomain);
  // An address nobody holds any more is no container's, but stays in the subnet (h1, h3).
  CHECK(ix.scope_for(ip("10.1.2.2"))->container == nullptr);
  CHECK(ix.remove({{"n", "c1", "eth0"}, "h1"}));
  CHECK(ix.listeners().empty());
  CHECK(ix.listen_addresses().empty());
  CHECK(ix.remove({{"n", "c9", "eth0"}, "h3"}));
  CHECK(ix.size() == 0);
  CHECK(!ix.scope_for(ip("10.1.1.2")));
}

TEST_CASE("dns index: replacing a record takes its old names and addresses back") {
  Index ix(53);
  Record a = rec("n", "h1", "c1", "old", "10.2.0.2/24", "10.2.0.1");
  ix.add(a);
  a.name = "new";
  a.addresses = {*cni::Prefix::parse("10.2.0.3/24")};
  ix.add(a);
  CHECK(ix.size() == 1);
  CHECK(addrs(ix, "10.2.0.3", "new") == std::vector<std::string>{"10.2.0.3"});
  CHECK(ix.resolve(*ix.scope_for(ip("10.2.0.3")), "old").kind == Resolution::Kind::kNotLocal);
  CHECK(ix.scope_for(ip("10.2.0.2"))->container == nullptr);
  CHECK(ix.resolve_ptr(*ix.scope_for(ip("10.2.0.3")), cni::dns::reverse_name(ip("10.2.0.3"))) ==
        "new.test.internal");
  CHECK(!ix.resolve_ptr(*ix.scope_for(ip("10.2.0.3")), cni::dns::reverse_name(ip("10.2.0.2"))));
}

TEST_CASE("dns index: local settings win over remote ones; stamps move with their scope") {
  Index ix(53);
  Record remote = rec("n", "h2", "c2", "r", "10.3.2.2/16");
  remote.net.internal = true;
  remote.serial = 100;
  ix.add(remote, false);
  CHECK(ix.networks()[0].settings.internal);
  Record local = rec("n", "h1", "c1", "l", "10.3.1.2/16", "10.3.1.1");
  local.serial = 1;  // older, but local
  ix.add(local);
  CHECK(!ix.networks()[0].settings.internal);

  ix.add(rec("other", "h1", "c3", "o", "10.4.0.2/24", "10.4.0.1"));
  auto s_n = *ix.scope_for(ip("10.3.1.2"));
  auto s_o = *ix.scope_for(ip("10.4.0.2"));
  uint64_t before_n = ix.stamp(s_n), before_o = ix.stamp(s_o);
  ix.add(rec("n", "h3", "c4", "x", "10.3.3.2/16"), false);
  CHECK(ix.stamp(*ix.scope_for(ip("10.3.1.2"))) != before_n);
  CHECK(ix.stamp(*ix.scope_for(ip("10.4.0.2"))) == before_o);
}
