// tether-agent (plugins/agent/agent.h) in-process against the real etcd: block claims are
// unique across hosts and survive restarts, the node record is published, kept and watched,
// and releases finish after an etcd outage.
#include "plugins/agent/agent.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

#include "common/control.h"
#include "common/etcd.h"
#include "tests/etcd/etcd_server.h"

using namespace cni;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string run_prefix() {
  static int n = 0;
  return "/tetc" + std::to_string(getpid()) + "-agent" + std::to_string(++n);
}

cluster::ClusterConfig config(const std::string& node, const std::string& prefix,
                              const std::string& dir) {
  json j = {{"etcd", {tetcd::server().url()}},
            {"node", node},
            {"address", "192.168.77." + std::to_string(node.back() - '0' + 10)},
            {"prefix", prefix},
            {"agentSocket", dir + "/" + node + ".sock"},
            {"stateDir", dir + "/" + node},
            {"leaseTTL", 3},
            {"timeoutMs", 500}};
  return cluster::ClusterConfig::parse(j, "cluster");
}

struct Recorder : agent::PeerSink {
  std::mutex* mu;
  std::vector<agent::NodeRecord>* last;
  Recorder(std::mutex* m, std::vector<agent::NodeRecord>* l) : mu(m), last(l) {}
  const char* name() const override { return "recorder"; }
  void sync(const std::vector<agent::NodeRecord>& peers, const std::string&) override {
    std::lock_guard lk(*mu);
    *last = peers;
  }
};

// An agent serving in a thread of this process.
struct Running {
  std::unique_ptr<agent::Agent> agent;
  std::atomic<bool> stop{false};
  std::thread t;
  std::mutex mu;
  std::vector<agent::NodeRecord> peers;

  explicit Running(const cluster::ClusterConfig& c) {
    agent = std::make_unique<agent::Agent>(c, agent::AgentOptions{});
    agent->add_sink(std::make_unique<Recorder>(&mu, &peers));
    agent->start();
    t = std::thread([this] { agent->run(stop); });
  }
  ~Running() {
    stop = true;
    t.join();
  }
  json call(const json& req) {
    auto c = control::Client::connect(agent->cluster().agent_socket, "tether-agent");
    REQUIRE(c);
    return c->call(req);
  }
  std::vector<agent::NodeRecord> seen() {
    std::lock_guard lk(mu);
    return peers;
  }
};

template <typename P>
bool eventually(int ms, P pred) {
  auto end = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tetc-agent-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() {
    std::string cmd = "rm -rf " + path;
    CHECK(std::system(cmd.c_str()) == 0);
  }
};

etcd::Options opts() {
  etcd::Options o;
  o.endpoints = {tetcd::server().url()};
  return o;
}

std::vector<std::string> blocks_of(const json& reply) {
  std::vector<std::string> out;
  for (const auto& b : reply["blocks"]) out.push_back(b.get<std::string>());
  return out;
}

}  // namespace

TEST_CASE("two hosts claiming at once never hold one block; a full range is code 50") {
  TempDir d;
  std::string prefix = run_prefix();
  Running h1(config("h1", prefix, d.path)), h2(config("h2", prefix, d.path));
  // 10.40.0.0/20 has 16 blocks of /24: the two hosts race for all of them.
  std::vector<std::string> got1, got2;
  auto claim_all = [](Running& h, std::vector<std::string>& got) {
    std::vector<std::string> have;
    for (;;) {
      json req = {{"op", "claim"}, {"range", "10.40.0.0/20"}, {"blockSize", 24}, {"have", have}};
      try {
        json r = h.call(req);
        REQUIRE(r.contains("block"));
        got.push_back(r["block"].get<std::string>());
        have = blocks_of(r);
      } catch (const Error& e) {
        CHECK(e.code() == kErrNotAvailable);
        return;
      }
    }
  };
  std::thread t1([&] { claim_all(h1, got1); });
  std::thread t2([&] { claim_all(h2, got2); });
  t1.join();
  t2.join();
  std::set<std::string> all(got1.begin(), got1.end());
  all.insert(got2.begin(), got2.end());
  CHECK(all.size() == 16);
  CHECK(got1.size() + got2.size() == 16);
  CHECK(!got1.empty());
  CHECK(!got2.empty());
  // etcd agrees, block by block.
  etcd::Client c(opts());
  for (const auto& b : got1) {
    std::string id = b;
    std::replace(id.begin(), id.end(), '/', '-');
    CHECK(c.get(prefix + "/blocks/10.40.0.0-20/" + id)->value == "h1");
  }
  CHECK(c.get_prefix(prefix + "/blocks/").kvs.size() == 16);
  // The local op needs no etcd and lists what the host holds.
  json held = h2.call({{"op", "blocks"}, {"range", "10.40.0.0/20"}, {"blockSize", 24}});
  std::vector<std::string> h2blocks = blocks_of(held);
  std::sort(got2.begin(), got2.end());
  std::sort(h2blocks.begin(), h2blocks.end());
  CHECK(h2blocks == got2);
  json can = h1.call({{"op", "can_claim"}, {"range", "10.40.0.0/20"}, {"blockSize", 24}});
  CHECK(!can["free"].get<bool>());
  c.del_prefix(prefix + "/");
}

TEST_CASE("same node, same blocks: across a restart and a lost state dir") {
  TempDir d;
  std::string prefix = run_prefix();
  auto cfg = config("h1", prefix, d.path);
  std::string first;
  {
    Running h(cfg);
    first = h.call({{"op", "claim"}, {"range", "10.50.0.0/16"}, {"blockSize", 24}})["block"];
  }
  {
    Running h(cfg);  // same state dir
    json r = h.call({{"op", "blocks"}, {"range", "10.50.0.0/16"}, {"blockSize", 24}});
    CHECK(blocks_of(r) == std::vector<std::string>{first});
    // Asking for more while the caller does not know the held one gives the held one.
    r = h.call({{"op", "claim"}, {"range", "10.50.0.0/16"}, {"blockSize", 24}});
    CHECK(!r.contains("block"));
    CHECK(blocks_of(r) == std::vector<std::string>{first});
  }
  std::string rm = "rm -rf " + cfg.state_dir;
  REQUIRE(std::system(rm.c_str()) == 0);
  {
    Running h(cfg);  // the state dir is gone: etcd's record gives the block back
    CHECK(eventually(3000, [&] {
      json r = h.call({{"op", "blocks"}, {"range", "10.50.0.0/16"}, {"blockSize", 24}});
      return blocks_of(r) == std::vector<std::string>{first};
    }));
  }
  etcd::Client(opts()).del_prefix(prefix + "/");
}

TEST_CASE("nodes are published, watched, republished after losing their lease, and leave") {
  TempDir d;
  std::string prefix = run_prefix();
  auto h1 = std::make_unique<Running>(config("h1", prefix, d.path));
  auto h2 = std::make_unique<Running>(config("h2", prefix, d.path));
  std::string b2 =
      h2->call({{"op", "claim"}, {"range", "10.60.0.0/16"}, {"blockSize", 24}})["block"];
  auto sees = [&](Running& h, const std::string& node, const std::string& block) {
    for (const auto& p : h.seen()) {
      if (p.node != node) continue;
      if (block.empty()) return true;
      return std::find(p.blocks.begin(), p.blocks.end(), *Prefix::parse(block)) != p.blocks.end();
    }
    return false;
  };
  CHECK(eventually(3000, [&] { return sees(*h1, "h2", b2) && sees(*h1, "h1", ""); }));
  for (const auto& p : h1->seen()) {
    if (p.node == "h2") {
      CHECK(p.underlay.str() == "192.168.77.12");
      CHECK(p.vtep_mac == overlay::vtep_mac(p.underlay));
    }
  }
  // Someone revokes h2's lease (or it expired): the record goes, and h2 publishes it again.
  etcd::Client c(opts());
  int64_t lease = std::stoll(h2->call({{"op", "status"}})["lease"].get<std::string>());
  c.lease_revoke(lease);
  CHECK(eventually(5000, [&] {
    auto kv = c.get(prefix + "/nodes/h2");
    return kv && kv->lease != lease && kv->lease != 0;
  }));
  CHECK(eventually(3000, [&] { return sees(*h1, "h2", b2); }));
  // A clean stop unpublishes at once (the lease is revoked).
  h2.reset();
  CHECK(!c.get(prefix + "/nodes/h2"));
  CHECK(eventually(3000, [&] { return !sees(*h1, "h2", ""); }));
  h1.reset();
  CHECK(c.get_prefix(prefix + "/nodes/").kvs.empty());
  c.del_prefix(prefix + "/");
}

TEST_CASE("an agent rides out an etcd restart; a release made meanwhile finishes after") {
  TempDir d;
  std::string prefix = run_prefix();
  Running h(config("h1", prefix, d.path));
  json r = h.call({{"op", "claim"}, {"range", "10.70.0.0/16"}, {"blockSize", 24}});
  std::string a = r["block"];
  r = h.call({{"op", "claim"}, {"range", "10.70.0.0/16"}, {"blockSize", 24}, {"have", {a}}});
  std::string b = r["block"];
  etcd::Client c(opts());
  std::string key_b = prefix + "/blocks/10.70.0.0-16/" + b.substr(0, b.find('/')) + "-24";
  REQUIRE(c.get(key_b));

  tetcd::server().kill();
  CHECK(eventually(4000, [&] { return !h.call({{"op", "status"}})["connected"].get<bool>(); }));
  // Held blocks keep answering without etcd; new ones are code 11; a release is pending.
  CHECK(
      blocks_of(h.call({{"op", "blocks"}, {"range", "10.70.0.0/16"}, {"blockSize", 24}})).size() ==
      2);
  try {
    h.call({{"op", "claim"}, {"range", "10.70.0.0/16"}, {"blockSize", 24}, {"have", {a, b}}});
    FAIL("claimed without etcd");
  } catch (const Error& e) {
    CHECK(e.code() == kErrTryAgainLater);
  }
  r = h.call({{"op", "release"}, {"range", "10.70.0.0/16"}, {"block", b}});
  CHECK(r["released"].get<bool>());
  CHECK(r["pending"].get<bool>());
  tetcd::server().start();
  CHECK(eventually(6000, [&] { return h.call({{"op", "status"}})["connected"].get<bool>(); }));
  CHECK(eventually(3000, [&] { return !c.get(key_b); }));
  CHECK(eventually(3000, [&] {
    auto kv = c.get(prefix + "/nodes/h1");
    if (!kv) return false;
    auto n = agent::node_from_json(kv->value);
    return n && n->blocks == std::vector<Prefix>{*Prefix::parse(a)};
  }));
  CHECK(h.call({{"op", "status"}})["releasing"].empty());
  c.del_prefix(prefix + "/");
}
