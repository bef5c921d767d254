#include "common/detached.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>

namespace cni {

namespace {

constexpr size_t kMaxKeep = 8;

// In a child: closes every descriptor but the (sorted, distinct, non-negative) `keep`.
void close_all_but(const int* keep, size_t n) {
  unsigned from = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto fd = static_cast<unsigned>(keep[i]);
    if (fd > from) ::close_range(from, fd - 1, 0);
    from = fd + 1;
  }
  ::close_range(from, UINT_MAX, 0);
}

}  // namespace

bool run_detached(std::span<const int> keep, void (*work)(void*), void* arg) {
  // Sorted and distinct before the fork: after it, only async-signal-safe calls.
  std::array<int, kMaxKeep> fds{};
  size_t n = 0;
  for (int fd : keep) {
    if (fd < 0 || n == fds.size()) continue;
    size_t at = 0;
    while (at < n && fds[at] < fd) ++at;
    if (at < n && fds[at] == fd) continue;
    for (size_t i = n; i > at; --i) fds[i] = fds[i - 1];
    fds[at] = fd;
    ++n;
  }
  // Two forks, so that the working process is nobody's child here: the middle one exits at
  // once and is reaped below, and the grandchild goes to init (or the nearest subreaper).
  const pid_t middle = ::fork();
  if (middle < 0) return false;
  if (middle == 0) {
    const pid_t grandchild = ::fork();
    if (grandchild != 0) ::_exit(grandchild > 0 ? 0 : 1);
    close_all_but(fds.data(), n);
    work(arg);
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace cni
