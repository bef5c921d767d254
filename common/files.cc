#include "common/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <random>

#include "common/error.h"

namespace cni {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

int Fd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

FileLock FileLock::exclusive(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw_errno("failed to open lock file " + path, errno, kErrIo);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_errno("failed to lock " + path, errno, kErrIo);
  }
  return FileLock(std::move(fd));
}

void ensure_dir(const std::string& path, mode_t mode) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos == path.size() || path[pos] == '/') {
      std::string part = path.substr(0, pos);
      if (::mkdir(part.c_str(), mode) != 0 && errno != EEXIST) {
        throw_errno("failed to create directory " + part, errno, kErrIo);
      }
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw Error(kErrIo, "not a directory", path);
  }
}

std::optional<std::string> read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("failed to open " + path, errno, kErrIo);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("failed to read " + path, errno, kErrIo);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

namespace {

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("failed to write " + path, errno, kErrIo);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

void fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd) ::fsync(fd.get());
}

// A fully written (and, when `sync`, fsynced) temp file next to `path`; removed on destruction
// unless renamed or linked away.
class TempFile {
 public:
  TempFile(const std::string& path, std::string_view data, mode_t mode, bool sync = true) {
    static std::mt19937_64 rng{std::random_device{}()};
    for (int attempt = 0; attempt < 16 && !fd_; ++attempt) {
      // Hidden (".name.tmp-pid-n") so that directory scans looking for leases skip it.
      auto slash = path.rfind('/');
      std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
      std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
      name_ = dir + "." + base + ".tmp-" + std::to_string(::getpid()) + "-" +
              std::to_string(rng() % 1000000);
      fd_ = Fd(::open(name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
      if (!fd_ && errno != EEXIST) throw_errno("failed to create " + name_, errno, kErrIo);
    }
    if (!fd_) throw Error(kErrIo, "failed to create a temp file", path);
    try {
      write_all(fd_.get(), data, name_);
      if (::fchmod(fd_.get(), mode) != 0) throw_errno("failed to chmod " + name_, errno, kErrIo);
      if (sync && ::fsync(fd_.get()) != 0) throw_errno("failed to sync " + name_, errno, kErrIo);
    } catch (...) {
      ::unlink(name_.c_str());
      throw;
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { ::unlink(name_.c_str()); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Fd fd_;
};

}  // namespace

void atomic_write(const std::string& path, std::string_view data, mode_t mode) {
  TempFile tmp(path, data, mode);
  if (::rename(tmp.name().c_str(), path.c_str()) != 0) {
    throw_errno("failed to rename into " + path, errno, kErrIo);
  }
  fsync_dir(dir_of(path));
}

void atomic_replace(const std::string& path, std::string_view data, mode_t mode) {
  TempFile tmp(path, data, mode, /*sync=*/false);
  if (::rename(tmp.name().c_str(), path.c_str()) != 0) {
    throw_errno("failed to rename into " + path, errno, kErrIo);
  }
}

bool create_exclusive(const std::string& path, std::string_view data, mode_t mode, bool sync_dir) {
  TempFile tmp(path, data, mode);
  if (::link(tmp.name().c_str(), path.c_str()) != 0) {
    if (errno == EEXIST) return false;
    throw_errno("failed to create " + path, errno, kErrIo);
  }
  if (sync_dir) fsync_dir(dir_of(path));
  return true;
}

bool remove_file(const std::string& path) {
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_errno("failed to remove " + path, errno, kErrIo);
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return out;
    throw_errno("failed to list " + dir, errno, kErrIo);
  }
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(std::move(name));
  }
  return out;
}

}  // namespace cni
