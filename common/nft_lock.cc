#include "common/nft_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "common/error.h"

namespace cni::nft {
namespace {

using std::chrono::microseconds;

// The lock is held for a transaction's reads and commit: the first retry comes soon, and a
// waiter never sleeps long past a release (flock has no timed wait, so waiting is polling).
constexpr microseconds kPollFirst{50};
constexpr microseconds kPollCap{1000};

Fd open_lock_file() {
  constexpr int kFlags = O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
  Fd fd(::open(kCommitLockPath, kFlags, 0600));
  if (!fd && errno == ENOENT) {  // the first call since boot
    ensure_dir(kCommitLockDir, 0755);
    fd = Fd(::open(kCommitLockPath, kFlags, 0600));
  }
  if (!fd) throw_errno(std::string("cannot open ") + kCommitLockPath, errno, kErrIo);
  return fd;
}

}  // namespace

Backoff::Backoff(Clock::duration first, Clock::duration cap)
    : step_(first),
      cap_(cap),
      rng_(static_cast<uint32_t>(getpid()) ^
           static_cast<uint32_t>(Clock::now().time_since_epoch().count())) {}

bool Backoff::sleep_until(Clock::time_point deadline) {
  std::uniform_int_distribution<Clock::rep> pick(step_.count() / 2, step_.count());
  const Clock::duration d(pick(rng_));
  if (Clock::now() + d > deadline) return false;
  std::this_thread::sleep_for(d);
  step_ = std::min(cap_, step_ * 2);
  return true;
}

CommitLock CommitLock::acquire(Clock::time_point deadline) {
  Fd fd = open_lock_file();
  Backoff backoff(kPollFirst, kPollCap);
  while (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK)
      throw_errno(std::string("cannot lock ") + kCommitLockPath, errno, kErrIo);
    if (!backoff.sleep_until(deadline)) {
      throw Error(kErrTryAgainLater, "nftables is busy",
                  std::string("another tether call held ") + kCommitLockPath +
                      " for the whole time budget");
    }
  }
  return CommitLock(std::move(fd));
}

}  // namespace cni::nft
