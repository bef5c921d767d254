#pragma once
// The lock that serialises tether's nftables transactions on a host, and the jittered backoff
// nft::run waits with.
//
// Every tether process takes kCommitLockPath (flock, exclusive) around the reads of a
// transaction and its commit, so that no other tether call can change what those reads saw
// before the batch lands: that is what makes a batch without the ruleset's generation id safe
// (common/nft.h). It is held for the reads and the commit only (tens to hundreds of
// microseconds), never across a socket's release, which can wait for an RCU grace period.
//
// Host-wide, not per network namespace, although an nftables ruleset belongs to one netns:
// - it must be the same lock for every tether process that can write one ruleset, whatever
//   moved it into that netns (setns, `ip netns exec`, a runtime's own namespace), and one path
//   needs no agreement on how to name a namespace (an nsfs inode can be reused once the
//   namespace is gone) and leaves no per-namespace files behind;
// - a runtime runs plugins in the host's netns; calls for other namespaces (tests, nested
//   runtimes) are rare, and at these hold times sharing the lock with them costs nothing
//   measurable (docs/nftables.md has the figures).
// It lives under /run: it must be shared by every process on the host (a runtime that starts
// plugins in a private mount namespace must share /run/tether with the host) and needs no
// cleanup, since a tmpfs /run starts empty with the kernel's empty ruleset.
#include <chrono>
#include <random>

#include "common/files.h"

namespace cni::nft {

inline constexpr const char* kCommitLockDir = "/run/tether";
inline constexpr const char* kCommitLockPath = "/run/tether/nft.lock";

using Clock = std::chrono::steady_clock;

// Sleeps that grow from `first` to `cap`, each a random fraction (1/2 to 1) of the current step,
// so that processes that collided once do not collide again in lock-step.
class Backoff {
 public:
  Backoff(Clock::duration first, Clock::duration cap);
  // Sleeps the next step and returns true, or returns false at once when that step would end
  // past `deadline`.
  bool sleep_until(Clock::time_point deadline);

 private:
  Clock::duration step_;
  Clock::duration cap_;
  std::minstd_rand rng_;
};

class CommitLock {
 public:
  // Takes the lock, waiting until `deadline` at most: throws Error(kErrTryAgainLater) when
  // another tether process held it all that time, Error(kErrIo) when the lock file cannot be
  // created or locked.
  static CommitLock acquire(Clock::time_point deadline);

 private:
  explicit CommitLock(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;  // closing it releases the lock
};

}  // namespace cni::nft
