// common/etcd.h against a real etcd 3.4 (etcd_server.h): every operation the cluster code uses,
// create-if-absent under contention, leases, watches across compaction and an etcd crash,
// failover and the time budget when etcd cannot be reached.
#include "common/etcd.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/files.h"
#include "tests/etcd/etcd_server.h"

using namespace cni::etcd;
using Clock = std::chrono::steady_clock;

namespace {

Options opts(std::vector<std::string> endpoints = {}, int timeout_ms = 2000) {
  Options o;
  o.endpoints = endpoints.empty() ? std::vector<std::string>{tetcd::server().url()} : endpoints;
  o.timeout_ms = timeout_ms;
  return o;
}

// A key of this test case only.
std::string k(const std::string& rest) { return "/tetc" + std::to_string(getpid()) + "/" + rest; }

long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Waits for `pred` (under `mu`) up to `ms`.
template <typename P>
bool wait_until(std::mutex& mu, std::condition_variable& cv, int ms, P pred) {
  std::unique_lock lk(mu);
  return cv.wait_for(lk, std::chrono::milliseconds(ms), pred);
}

}  // namespace

TEST_CASE("put, get, prefix reads and deletes") {
  Client c(opts());
  c.del_prefix(k("kv/"));
  CHECK(!c.get(k("kv/a")));
  int64_t r1 = c.put(k("kv/a"), "1");
  int64_t r2 = c.put(k("kv/b"), std::string("bin\0\xff", 5));
  CHECK(r2 > r1);
  c.put(k("kvx"), "outside the prefix");
  auto a = c.get(k("kv/a"));
  REQUIRE(a);
  CHECK(a->value == "1");
  CHECK(a->create_revision == r1);
  CHECK(a->mod_revision == r1);
  CHECK(a->version == 1);
  Range r = c.get_prefix(k("kv/"));
  REQUIRE(r.kvs.size() == 2);
  CHECK(r.kvs[0].key == k("kv/a"));
  CHECK(r.kvs[1].value == std::string("bin\0\xff", 5));
  CHECK(r.revision >= r2 + 1);
  c.put(k("kv/a"), "2");
  CHECK(c.get(k("kv/a"))->version == 2);
  CHECK(c.del(k("kv/a")) == 1);
  CHECK(c.del(k("kv/a")) == 0);
  CHECK(c.del_prefix(k("kv/")) == 1);
  CHECK(c.get_prefix(k("kv/")).kvs.empty());
  CHECK(c.get(k("kvx"))->value == "outside the prefix");
  CHECK(c.del(k("kvx")) == 1);
}

TEST_CASE("create-if-absent: one winner among concurrent writers") {
  Client c(opts());
  c.del_prefix(k("claim/"));
  CHECK(c.create(k("claim/x"), "me"));
  KeyValue existing;
  CHECK(!c.create(k("claim/x"), "you", 0, &existing));
  CHECK(existing.value == "me");
  CHECK(c.get(k("claim/x"))->value == "me");

  // 8 threads, each with its own client, race for 20 keys: each key has exactly one owner and
  // the value stored is the owner's.
  std::vector<std::vector<int>> won(8);
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([t, &won] {
      Client mine(opts());
      for (int i = 0; i < 20; ++i) {
        if (mine.create(k("claim/race" + std::to_string(i)), std::to_string(t))) {
          won[t].push_back(i);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  std::vector<int> owner(20, -1);
  for (int t = 0; t < 8; ++t) {
    for (int i : won[t]) {
      CHECK(owner[i] == -1);
      owner[i] = t;
    }
  }
  for (int i = 0; i < 20; ++i) {
    CHECK(owner[i] >= 0);
    CHECK(c.get(k("claim/race" + std::to_string(i)))->value == std::to_string(owner[i]));
  }

  CHECK(!c.delete_if_value(k("claim/x"), "you"));
  CHECK(c.get(k("claim/x")));
  CHECK(c.delete_if_value(k("claim/x"), "me"));
  CHECK(!c.get(k("claim/x")));
  CHECK(!c.delete_if_value(k("claim/x"), "me"));
  CHECK(c.del_prefix(k("claim/")) == 20);
}

TEST_CASE("leases: keys live while kept alive and go with the lease") {
  Client c(opts());
  int64_t lease = c.lease_grant(2);
  CHECK(lease != 0);
  c.put(k("lease/a"), "v", lease);
  CHECK(c.get(k("lease/a"))->lease == lease);
  CHECK(c.create(k("lease/b"), "v", lease));
  // Kept alive past its TTL, the key stays.
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    CHECK(c.lease_keepalive(lease) == 2);
  }
  CHECK(c.get(k("lease/a")));
  c.lease_revoke(lease);
  CHECK(!c.get(k("lease/a")));
  CHECK(!c.get(k("lease/b")));
  CHECK(c.lease_keepalive(lease) == 0);
  c.lease_revoke(lease);  // unknown now: not an error

  // Not kept alive, it expires (etcd's minimum TTL is rounded up; wait generously).
  int64_t short_lease = c.lease_grant(2);
  c.put(k("lease/c"), "v", short_lease);
  auto t0 = Clock::now();
  while (c.get(k("lease/c")) && ms_since(t0) < 8000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(!c.get(k("lease/c")));
  CHECK(c.lease_keepalive(short_lease) == 0);
  // A put with an unknown lease is refused (gRPC NOT_FOUND).
  try {
    c.put(k("lease/d"), "v", short_lease);
    FAIL("put with an expired lease succeeded");
  } catch (const Refused& e) {
    CHECK(e.grpc_code() == 5);
  }
}

TEST_CASE("watch: events in order from a revision, then compaction") {
  Client c(opts());
  c.del_prefix(k("w/"));
  int64_t start = c.put(k("w/a"), "1");
  c.put(k("w/b"), "2");
  c.del(k("w/a"));
  c.put(k("wx"), "not under the prefix");
  std::vector<Event> seen;
  Client watcher(opts());
  watcher.watch(k("w/"), start, [&](const std::vector<Event>& evs, int64_t rev) {
    CHECK(rev >= start);
    seen.insert(seen.end(), evs.begin(), evs.end());
    return seen.size() < 3;
  });
  REQUIRE(seen.size() == 3);
  CHECK(!seen[0].deleted);
  CHECK(seen[0].kv.key == k("w/a"));
  CHECK(seen[0].kv.value == "1");
  CHECK(seen[1].kv.key == k("w/b"));
  CHECK(seen[2].deleted);
  CHECK(seen[2].kv.key == k("w/a"));

  // Stopped from outside while idle.
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop = true;
  });
  auto t0 = Clock::now();
  int64_t now = c.get_prefix(k("w/")).revision;
  watcher.watch(
      k("w/"), now + 1, [](const std::vector<Event>&, int64_t) { return true; }, &stop);
  stopper.join();
  CHECK(ms_since(t0) < 2000);

  int64_t rev = c.put(k("w/c"), "3");
  c.call("/v3/kv/compaction", {{"revision", std::to_string(rev)}});
  try {
    watcher.watch(k("w/"), start, [](const std::vector<Event>&, int64_t) { return false; });
    FAIL("a compacted revision was watched");
  } catch (const Compacted& e) {
    CHECK(e.compact_revision() == rev);
  }
  c.del_prefix(k("w"));
}

TEST_CASE("unreachable etcd is code 11 within the budget; failover to the next endpoint") {
  // A port where nothing listens: connection refused at once.
  Options refused = opts({"http://" + tetcd::server().address() + ":1"}, 500);
  Client bad(refused);
  auto t0 = Clock::now();
  try {
    bad.get(k("x"));
    FAIL("no error");
  } catch (const Unavailable& e) {
    CHECK(e.code() == cni::kErrTryAgainLater);
  }
  CHECK(ms_since(t0) < 600);

  // A server that accepts connections and never answers: the budget bounds the wait.
  cni::Fd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(l);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  REQUIRE(::listen(l.get(), 16) == 0);
  socklen_t len = sizeof(sa);
  ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  std::string silent = "http://127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  Client mute(opts({silent}, 400));
  t0 = Clock::now();
  CHECK_THROWS_AS(mute.put(k("x"), "v"), Unavailable);
  long took = ms_since(t0);
  CHECK(took >= 350);
  CHECK(took < 900);

  // Failover: the dead endpoint is skipped, and the good one is asked first next time.
  Client two(opts({"http://" + tetcd::server().address() + ":1", tetcd::server().url()}));
  two.put(k("fo"), "v");
  CHECK(two.endpoint() == tetcd::server().url());
  CHECK(two.get(k("fo"))->value == "v");
  CHECK(two.del(k("fo")) == 1);
}

TEST_CASE("a mirror survives etcd being killed and restarted") {
  Client c(opts());
  c.del_prefix(k("m/"));
  c.put(k("m/a"), "1");

  std::mutex mu;
  std::condition_variable cv;
  Mirror::Snapshot last;
  int changes = 0;
  std::vector<bool> states;
  std::atomic<bool> stop{false};
  Mirror m(opts({}, 500), k("m/"));
  std::thread t([&] {
    m.run(
        stop,
        [&](const Mirror::Snapshot& s) {
          std::lock_guard lk(mu);
          last = s;
          ++changes;
          cv.notify_all();
        },
        [&](bool up) {
          std::lock_guard lk(mu);
          states.push_back(up);
          cv.notify_all();
        },
        200);
  });
  auto has = [&](const std::string& key, const std::string& v) {
    auto it = last.find(key);
    return it != last.end() && it->second.value == v;
  };
  CHECK(wait_until(mu, cv, 3000, [&] { return has(k("m/a"), "1"); }));
  c.put(k("m/b"), "2");
  CHECK(wait_until(mu, cv, 3000, [&] { return has(k("m/b"), "2"); }));
  c.del(k("m/a"));
  CHECK(wait_until(mu, cv, 3000, [&] { return !last.contains(k("m/a")); }));

  tetcd::server().kill();
  CHECK(wait_until(mu, cv, 5000, [&] { return !states.empty() && !states.back(); }));
  {
    std::lock_guard lk(mu);
    CHECK(has(k("m/b"), "2"));  // the last view stands while etcd is away
  }
  tetcd::server().start();
  c.put(k("m/c"), "3");
  c.del(k("m/b"));
  CHECK(wait_until(mu, cv, 5000, [&] {
    return !states.empty() && states.back() && has(k("m/c"), "3") && !last.contains(k("m/b"));
  }));
  {
    std::lock_guard lk(mu);
    CHECK(last.size() == 1);
  }
  // And watching again, not just re-read: a later change arrives too.
  c.put(k("m/d"), "4");
  CHECK(wait_until(mu, cv, 3000, [&] { return has(k("m/d"), "4"); }));
  stop = true;
  t.join();
  c.del_prefix(k("m/"));
}

TEST_CASE("a client keeps working across an etcd restart") {
  Client c(opts());
  c.put(k("r"), "before");
  tetcd::server().restart();
  CHECK(c.get(k("r"))->value == "before");  // the data dir survives, the dead connection not
  CHECK(c.del(k("r")) == 1);
}
