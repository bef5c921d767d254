// nft::run: one CNI call's change to the ruleset, retried when the ruleset changed meanwhile.
#include <chrono>
#include <thread>

#include "common/error.h"
#include "common/nft.h"

namespace cni::nft {

void run(const std::function<void(NftTransaction&)>& build, int attempts) {
  for (int attempt = 1;; ++attempt) {
    NftTransaction tx = NftTransaction::open();
    build(tx);
    try {
      tx.commit();
      return;
    } catch (const Error& e) {
      if (e.code() != kErrTryAgainLater || attempt >= attempts) {
        throw;
      }
    }
    // Someone else is committing; step aside briefly so that parallel ADDs do not collide again.
    std::this_thread::sleep_for(std::chrono::microseconds(500 * attempt));
  }
}

}  // namespace cni::nft
