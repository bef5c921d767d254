// tether-nft-bench: what an nftables commit costs tether, measured against the running kernel in
// a network namespace of its own (docs/nftables.md has the results and what they mean).
//
//   tether-nft-bench release [reps]       commit and socket-release time per set type and kind
//                                         of delete; release delayed after a delete commit; a
//                                         commit made while another socket is being released
//   tether-nft-bench lock [reps]          one bridge-like transaction with and without the lock
//   tether-nft-bench parallel [procs] [cycles]
//                                         processes adding and deleting an element each call,
//                                         as plugins do: lock held as nft::run holds it, lock
//                                         held across the socket's release, and no lock
//
// Needs root. The lock is the real host-wide one (/run/tether/nft.lock).
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/mnl.h"
#include "common/nft.h"
#include "common/nft_lock.h"

namespace {

namespace nft = cni::nft;
using nft::Family;
using Clock = std::chrono::steady_clock;
constexpr Family kInet = Family::kInet;
const std::string kTable = "bench";

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void pause_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// ---- release -----------------------------------------------------------------------------------

struct SetCase {
  const char* name;
  nft::SetSpec spec;
  std::function<nft::Element(uint32_t)> element;
};

std::vector<SetCase> set_cases() {
  auto v4 = [](uint32_t i) { return nft::be32(0x0a000000 + i); };
  return {
      {"hash of ifnames",
       {"h_if", {nft::kTypeIfname}, {}, false, 0},
       [](uint32_t i) { return nft::Element{nft::ifname("v" + std::to_string(i))}; }},
      {"verdict map ifname . ifname",
       {"vm", {nft::kTypeIfname, nft::kTypeIfname}, {}, true, 0},
       [](uint32_t i) {
         nft::Element e{nft::concat({nft::ifname("v" + std::to_string(i)), nft::ifname("x")})};
         e.verdict = nft::Verdict::accept();
         return e;
       }},
      {"map proto . port : addr . port",
       {"mp",
        {nft::kTypeInetProto, nft::kTypeInetService},
        {nft::kTypeIpv4Addr, nft::kTypeInetService},
        false,
        0},
       [](uint32_t i) {
         return nft::Element{nft::concat({nft::u8(6), nft::be16(static_cast<uint16_t>(i))}),
                             nft::concat({nft::be32(0x0a000001), nft::be16(80)})};
       }},
      {"bitmap (inet_service)",
       {"bm", {nft::kTypeInetService}, {}, false, 0},
       [](uint32_t i) { return nft::Element{nft::be16(static_cast<uint16_t>(i))}; }},
      {"rbtree (interval)",
       {"rb", {nft::kTypeIpv4Addr}, {}, false, NFT_SET_INTERVAL},
       [v4](uint32_t i) { return nft::Element{v4(i * 4)}; }},
      {"pipapo (concatenated interval)",
       {"pp", {nft::kTypeIpv4Addr, nft::kTypeIpv4Addr}, {}, false, NFT_SET_INTERVAL},
       [v4](uint32_t i) {
         nft::Element e{nft::concat({v4(i), nft::be32(0x0b000000)})};
         e.key_end = nft::concat({v4(i), nft::be32(0x0b0000ff)});
         return e;
       }},
      {"hash with timeouts",
       {"to", {nft::kTypeIpv4Addr}, {}, false, NFT_SET_TIMEOUT},
       [v4](uint32_t i) { return nft::Element{v4(i)}; }},
  };
}

// Commit and release times of one kind of transaction, each after the kernel has settled.
void measure_release(const char* what, int reps, const std::function<void()>& setup,
                     const std::function<void(nft::NftTransaction&)>& build) {
  std::vector<double> commit, release;
  for (int r = 0; r < reps; ++r) {
    setup();
    pause_ms(40);  // the setup's own grace period passes
    auto sock = std::make_unique<cni::mnl::Socket>(cni::mnl::Socket::netfilter());
    nft::NftTransaction tx(*sock);
    build(tx);
    Clock::time_point t = Clock::now();
    tx.commit();
    commit.push_back(ms_since(t));
    t = Clock::now();
    sock.reset();
    release.push_back(ms_since(t));
  }
  std::printf("| %s | %.3f ms | %.3f ms |\n", what, percentile(commit, 0.5),
              percentile(release, 0.5));
}

void bench_release(int reps) {
  const std::vector<SetCase> cases = set_cases();
  nft::run([&](nft::NftTransaction& tx) {
    tx.add_table(kInet, kTable);
    for (const SetCase& c : cases) tx.add_set(kInet, kTable, c.spec);
    tx.add_set(kInet, kTable, {"h_v4", {nft::kTypeIpv4Addr}, {}, false, 0});
    tx.add_chain(kInet, kTable, {"c", std::nullopt});
  });
  std::printf(
      "| what the commit does | commit | release of its socket right after |\n"
      "|---|---|---|\n");
  uint32_t n = 0;
  measure_release(
      "add an element (hash)", reps, [] {},
      [&](nft::NftTransaction& tx) {
        tx.add_elements(kInet, kTable, "h_if", {cases[0].element(++n)});
      });
  for (const SetCase& c : cases) {
    measure_release((std::string("delete an element: ") + c.name).c_str(), reps,
                    [&] {
                      ++n;
                      nft::run([&](nft::NftTransaction& tx) {
                        tx.add_elements(kInet, kTable, c.spec.name, {c.element(n)});
                      });
                    },
                    [&](nft::NftTransaction& tx) {
                      tx.delete_elements(kInet, kTable, c.spec.name, {c.element(n)});
                    });
  }
  measure_release(
      "flush a chain (DELRULE)", reps,
      [] {
        nft::run(
            [](nft::NftTransaction& tx) { tx.add_rule(nft::Rule(kInet, kTable, "c").counter()); });
      },
      [](nft::NftTransaction& tx) { tx.flush_chain(kInet, kTable, "c"); });
  measure_release(
      "add and delete a set", reps, [] {},
      [](nft::NftTransaction& tx) {
        tx.add_set(kInet, kTable, {"tmp", {nft::kTypeIpv4Addr}, {}, false, 0});
        tx.delete_set(kInet, kTable, "tmp");
      });
  measure_release(
      "add an existing table (no-op)", reps, [] {},
      [](nft::NftTransaction& tx) { tx.add_table(kInet, kTable); });
  measure_release(
      "reads only (nothing queued)", reps, [] {},
      [](nft::NftTransaction& tx) { tx.table_exists(kInet, kTable); });

  std::printf("\n| release of the socket, after a delete commit | wait |\n|---|---|\n");
  for (int delay : {0, 2, 5, 10, 20}) {
    std::vector<double> wait;
    for (int r = 0; r < reps; ++r) {
      const nft::Element e{nft::be32(0x0c000000 + static_cast<uint32_t>(r))};
      nft::run([&](nft::NftTransaction& tx) { tx.add_elements(kInet, kTable, "h_v4", {e}); });
      pause_ms(40);
      auto sock = std::make_unique<cni::mnl::Socket>(cni::mnl::Socket::netfilter());
      nft::run(*sock,
               [&](nft::NftTransaction& tx) { tx.delete_elements(kInet, kTable, "h_v4", {e}); });
      pause_ms(delay);
      const Clock::time_point t = Clock::now();
      sock.reset();
      wait.push_back(ms_since(t));
    }
    std::printf("| %d ms after the commit | %.3f ms |\n", delay, percentile(wait, 0.5));
  }

  // Another socket's release holds nf_tables' commit mutex while it waits.
  std::vector<double> blocked;
  for (int r = 0; r < reps; ++r) {
    const nft::Element e{nft::be32(0x0d000000 + static_cast<uint32_t>(r))};
    nft::run([&](nft::NftTransaction& tx) { tx.add_elements(kInet, kTable, "h_v4", {e}); });
    pause_ms(40);
    auto sock = std::make_unique<cni::mnl::Socket>(cni::mnl::Socket::netfilter());
    nft::run(*sock,
             [&](nft::NftTransaction& tx) { tx.delete_elements(kInet, kTable, "h_v4", {e}); });
    nft::NftTransaction other = nft::NftTransaction::open();
    other.add_table(kInet, kTable);
    std::thread releaser([&] { sock.reset(); });
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    const Clock::time_point t = Clock::now();
    other.commit();
    blocked.push_back(ms_since(t));
    releaser.join();
  }
  std::printf("\na commit made 0.3 ms into another socket's release after a delete: %.3f ms\n",
              percentile(blocked, 0.5));
}

// ---- lock --------------------------------------------------------------------------------------

// What bridge ADD does for a second container on a bridge: reads a few elements by key, adds two.
void bridge_like(nft::NftTransaction& tx, uint32_t i) {
  for (const char* set : {"bridges", "internal", "isolated", "masq"}) {
    tx.get_element(kInet, kTable, set, nft::Element{nft::ifname("tbr0")});
  }
  tx.add_elements(kInet, kTable, "masq", {nft::Element{nft::ifname("v" + std::to_string(i))}});
  tx.add_elements(kInet, kTable, "bridges", {nft::Element{nft::ifname("tbr0")}});
}

void bench_lock(int reps) {
  nft::run([](nft::NftTransaction& tx) {
    tx.add_table(kInet, kTable);
    for (const char* s : {"bridges", "internal", "isolated", "masq"}) {
      tx.add_set(kInet, kTable, {s, {nft::kTypeIfname}, {}, false, 0});
    }
  });
  cni::mnl::Socket sock = cni::mnl::Socket::netfilter();
  std::vector<double> bare, locked, lock_only;
  for (int r = 0; r < reps; ++r) {
    const uint32_t i = static_cast<uint32_t>(r);
    Clock::time_point t = Clock::now();
    {
      nft::NftTransaction tx(sock);
      bridge_like(tx, 2 * i);
      tx.commit();
    }
    bare.push_back(ms_since(t) * 1000);
    t = Clock::now();
    nft::run(sock, [&](nft::NftTransaction& tx) { bridge_like(tx, 2 * i + 1); });
    locked.push_back(ms_since(t) * 1000);
    t = Clock::now();
    { nft::CommitLock lock = nft::CommitLock::acquire(Clock::now() + std::chrono::seconds(10)); }
    lock_only.push_back(ms_since(t) * 1000);
  }
  std::printf(
      "| bridge-like transaction (4 reads by key, 2 adds) | median | p90 |\n|---|---|---|\n");
  std::printf("| without the lock | %.0f us | %.0f us |\n", percentile(bare, 0.5),
              percentile(bare, 0.9));
  std::printf("| nft::run, with the lock | %.0f us | %.0f us |\n", percentile(locked, 0.5),
              percentile(locked, 0.9));
  std::printf("| taking and releasing the lock alone | %.0f us | %.0f us |\n",
              percentile(lock_only, 0.5), percentile(lock_only, 0.9));
}

// ---- parallel ----------------------------------------------------------------------------------

enum class Mode { kRun, kLockAcrossRelease, kNoLock };

// One plugin-like call: a fresh socket, one transaction, the socket released; total time.
double call(Mode mode, const std::function<void(nft::NftTransaction&)>& build) {
  const Clock::time_point t = Clock::now();
  if (mode == Mode::kRun) {
    nft::run(build);
  } else {
    std::optional<nft::CommitLock> lock;
    if (mode == Mode::kLockAcrossRelease) {
      lock.emplace(nft::CommitLock::acquire(Clock::now() + std::chrono::seconds(10)));
    }
    nft::NftTransaction tx = nft::NftTransaction::open();
    build(tx);
    tx.commit();
  }  // socket released here; in kLockAcrossRelease, then the lock
  return ms_since(t);
}

void bench_parallel(int procs, int cycles) {
  nft::run([](nft::NftTransaction& tx) {
    tx.add_table(kInet, kTable);
    tx.add_set(kInet, kTable, {"masq", {nft::kTypeIpv4Addr}, {}, false, 0});
  });
  std::printf(
      "| %d processes x %d calls (add, then delete, an element) | add median | delete "
      "median | delete p90 | wall |\n|---|---|---|---|---|\n",
      procs, 2 * cycles);
  const size_t slots = static_cast<size_t>(procs) * static_cast<size_t>(cycles) * 2;
  for (Mode mode : {Mode::kRun, Mode::kLockAcrossRelease, Mode::kNoLock}) {
    auto* shared =
        static_cast<double*>(mmap(nullptr, slots * sizeof(double), PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    const Clock::time_point start = Clock::now();
    for (int p = 0; p < procs; ++p) {
      if (fork() == 0) {
        for (int c = 0; c < cycles; ++c) {
          const nft::Element e{nft::be32(0x0a000000 + static_cast<uint32_t>(p * cycles + c))};
          double* out = shared + 2 * (p * cycles + c);
          out[0] = call(
              mode, [&](nft::NftTransaction& tx) { tx.add_elements(kInet, kTable, "masq", {e}); });
          out[1] = call(mode, [&](nft::NftTransaction& tx) {
            if (tx.get_element(kInet, kTable, "masq", e))
              tx.delete_elements(kInet, kTable, "masq", {e});
          });
        }
        _exit(0);
      }
    }
    for (int p = 0; p < procs; ++p) wait(nullptr);
    const double wall = ms_since(start);
    std::vector<double> add, del;
    for (size_t i = 0; i < slots; i += 2) {
      add.push_back(shared[i]);
      del.push_back(shared[i + 1]);
    }
    munmap(shared, slots * sizeof(double));
    const char* name = mode == Mode::kRun                 ? "nft::run (lock for reads + commit)"
                       : mode == Mode::kLockAcrossRelease ? "lock held across the socket's release"
                                                          : "no lock";
    std::printf("| %s | %.2f ms | %.2f ms | %.2f ms | %.0f ms |\n", name, percentile(add, 0.5),
                percentile(del, 0.5), percentile(del, 0.9), wall);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "";
  if (what != "release" && what != "lock" && what != "parallel") {
    std::fprintf(stderr, "usage: %s release [reps] | lock [reps] | parallel [procs] [cycles]\n",
                 argv[0]);
    return 2;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  try {
    if (what == "release") bench_release(argc > 2 ? std::atoi(argv[2]) : 15);
    if (what == "lock") bench_lock(argc > 2 ? std::atoi(argv[2]) : 500);
    if (what == "parallel") {
      bench_parallel(argc > 2 ? std::atoi(argv[2]) : 8, argc > 3 ? std::atoi(argv[3]) : 25);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tether-nft-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
