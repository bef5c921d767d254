#pragma once
// Network namespaces by file descriptor: NetnsFd owns an fd proven to be a netns, NetnsGuard
// moves the calling thread into one for a scope. setns() affects only the calling thread, so a
// plugin must stay single-threaded while a guard is alive (DESIGN.md, Conventions).
#include <optional>
#include <string>
#include <utility>

namespace cni {

class NetnsFd {
 public:
  // Opens `path` (a bind-mounted netns under /run/netns, /proc/<pid>/ns/net, ...) and checks that
  // it is a network namespace. Throws Error(kErrInvalidNetns) naming the path otherwise, and
  // also when the path does not exist.
  static NetnsFd open(const std::string& path);
  // As open(), but a path that does not exist (ENOENT) is std::nullopt: DEL must succeed when
  // the container's netns is already gone.
  static std::optional<NetnsFd> open_if_exists(const std::string& path);
  // The calling thread's current netns (/proc/thread-self/ns/net).
  static NetnsFd current();

  NetnsFd(const NetnsFd&) = delete;
  NetnsFd& operator=(const NetnsFd&) = delete;
  NetnsFd(NetnsFd&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}
  NetnsFd& operator=(NetnsFd&& other) noexcept;
  ~NetnsFd();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // True when both refer to the same namespace (same st_dev and st_ino of the nsfs inode).
  bool same_as(const NetnsFd& other) const;

 private:
  NetnsFd(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

// True when the calling thread already lives in the netns at `path`. The skel uses it to refuse
// CNI_NETNS equal to the plugin's own netns (CNI error 8). Throws like NetnsFd::open().
bool is_current_netns(const std::string& path);

// Enters `target` for the guard's lifetime and restores the thread's previous netns on
// destruction. Restoring cannot fail in practice (we hold an fd to the old netns); if it does,
// the thread would keep running in the wrong namespace, so the destructor aborts.
class NetnsGuard {
 public:
  explicit NetnsGuard(const NetnsFd& target);
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  ~NetnsGuard();

 private:
  NetnsFd saved_;
};

// Runs f() inside `ns` and returns its result; the previous netns is restored even when f throws.
template <class F>
auto in_netns(const NetnsFd& ns, F&& f) {
  NetnsGuard guard(ns);
  return std::forward<F>(f)();
}

}  // namespace cni
