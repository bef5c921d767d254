// nft::run: one CNI call's change to the ruleset, under tether's commit lock, rebuilt after a
// refusal that someone else's change explains, within a time budget (common/nft.h).
#include <cstdlib>
#include <string>

#include "common/crash_point.h"
#include "common/error.h"
#include "common/mnl.h"
#include "common/nft.h"
#include "common/nft_lock.h"

namespace cni::nft {
namespace {

using std::chrono::milliseconds;

// Retries come quickly at first (a one-off collision) and settle at a pace that leaves a busy
// writer room to finish.
constexpr milliseconds kRetryFirst{1};
constexpr milliseconds kRetryCap{100};

#ifdef TETHER_TEST_HOOKS
// TETHER_TEST_NFT_INTERFERE=<table>: right before each commit of a non-empty batch, another
// writer -- a socket of its own, without the lock, as any other program -- adds a chain to ip
// table <table>. The deterministic test of "someone commits between tether's reads and its
// commit, every time".
void interfere(const NftTransaction& tx) {
  const char* table = std::getenv("TETHER_TEST_NFT_INTERFERE");
  if (table == nullptr || *table == '\0' || tx.size() == 0) return;
  static int n = 0;
  NftTransaction other = NftTransaction::open();
  other.add_table(Family::kIpv4, table);
  other.add_chain(Family::kIpv4, table,
                  {"c" + std::to_string(getpid()) + "_" + std::to_string(++n), std::nullopt});
  other.commit();
}
#else
void interfere(const NftTransaction&) {}
#endif

// The reads and the commit, under the lock; the lock goes before anything waits.
void attempt(mnl::Socket& sock, const std::function<void(NftTransaction&)>& build,
             Clock::time_point deadline) {
  CommitLock lock = CommitLock::acquire(deadline);
  NftTransaction tx(sock);
  build(tx);
  interfere(tx);
  tx.commit();
}

}  // namespace

void run(mnl::Socket& sock, const std::function<void(NftTransaction&)>& build,
         milliseconds budget) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + budget;
  Backoff backoff(kRetryFirst, kRetryCap);
  for (int attempts = 1;; ++attempts) {
    try {
      attempt(sock, build, deadline);
      crash_point("nft-committed");
      return;
    } catch (const Error& e) {
      if (e.code() != kErrTryAgainLater) throw;
      if (!backoff.sleep_until(deadline)) {
        const auto spent = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
        throw Error(kErrTryAgainLater, e.msg(),
                    e.details() + "; gave up after " + std::to_string(attempts) + " attempts in " +
                        std::to_string(spent.count()) + " ms");
      }
    }
  }
}

void run(const std::function<void(NftTransaction&)>& build, milliseconds budget) {
  mnl::Socket sock = mnl::Socket::netfilter();
  run(sock, build, budget);
}

}  // namespace cni::nft
