#include "common/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "common/error.h"

namespace cni {
namespace {

constexpr char kThreadNetns[] = "/proc/thread-self/ns/net";

// Returns the open fd, or -errno when the path cannot be opened. The path comes from outside
// (CNI_NETNS), so nothing that could block is done before its type is known: an O_PATH open
// never blocks (a FIFO, a device), fstat on it tells what it is, and only a regular file (a
// namespace file is one on nsfs) is opened for real, through /proc/self/fd so that it is the
// same inode. Throws Error(kErrInvalidNetns) when the file is something else: a FIFO, a
// directory, a regular file elsewhere than nsfs, another namespace type.
int open_checked(const std::string& path) {
  int pfd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
  if (pfd < 0) {
    return -errno;
  }
  struct stat st {};
  if (::fstat(pfd, &st) != 0) {
    int err = errno;
    ::close(pfd);
    throw_errno("cannot stat netns " + path, err, kErrInvalidNetns);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(pfd);
    throw Error(kErrInvalidNetns, "not a network namespace",
                path + (S_ISDIR(st.st_mode)    ? " is a directory"
                        : S_ISFIFO(st.st_mode) ? " is a FIFO"
                                               : " is not a namespace file"));
  }
  std::string self = "/proc/self/fd/" + std::to_string(pfd);
  int fd = ::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  int open_err = errno;
  ::close(pfd);
  if (fd < 0) {
    throw_errno("cannot open netns " + path, open_err, kErrInvalidNetns);
  }
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) {
    int err = errno;
    ::close(fd);
    throw_errno("cannot stat netns " + path, err, kErrInvalidNetns);
  }
  if (fs.f_type != static_cast<decltype(fs.f_type)>(NSFS_MAGIC) &&
      fs.f_type != static_cast<decltype(fs.f_type)>(PROC_SUPER_MAGIC)) {
    ::close(fd);
    throw Error(kErrInvalidNetns, "not a network namespace", path);
  }
  // nsfs also holds uts, mnt, pid... namespaces; ask which one this is (Linux 4.11+).
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type >= 0 && type != CLONE_NEWNET) {
    ::close(fd);
    throw Error(kErrInvalidNetns, "not a network namespace", path + " is another namespace type");
  }
  return fd;
}

}  // namespace

NetnsFd NetnsFd::open(const std::string& path) {
  int fd = open_checked(path);
  if (fd < 0) {
    throw_errno("cannot open netns " + path, -fd, kErrInvalidNetns);
  }
  return NetnsFd(fd, path);
}

std::optional<NetnsFd> NetnsFd::open_if_exists(const std::string& path) {
  int fd = open_checked(path);
  if (fd == -ENOENT) {
    return std::nullopt;
  }
  if (fd < 0) {
    throw_errno("cannot open netns " + path, -fd, kErrInvalidNetns);
  }
  return NetnsFd(fd, path);
}

NetnsFd NetnsFd::current() {
  int fd = ::open(kThreadNetns, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw_errno(std::string("cannot open ") + kThreadNetns);
  }
  return NetnsFd(fd, kThreadNetns);
}

NetnsFd& NetnsFd::operator=(NetnsFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

NetnsFd::~NetnsFd() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool NetnsFd::same_as(const NetnsFd& other) const {
  struct stat a {};
  struct stat b {};
  if (::fstat(fd_, &a) != 0 || ::fstat(other.fd_, &b) != 0) {
    throw_errno("cannot stat netns " + path_);
  }
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

bool is_current_netns(const std::string& path) {
  return NetnsFd::open(path).same_as(NetnsFd::current());
}

NetnsGuard::NetnsGuard(const NetnsFd& target) : saved_(NetnsFd::current()) {
  if (::setns(target.fd(), CLONE_NEWNET) != 0) {
    throw_errno("cannot enter netns " + target.path(), errno, kErrInvalidNetns);
  }
}

NetnsGuard::~NetnsGuard() {
  if (::setns(saved_.fd(), CLONE_NEWNET) != 0) {
    std::perror("tether: cannot restore the original netns");
    std::abort();
  }
}

}  // namespace cni
