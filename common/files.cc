#include "common/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <random>

#include "common/crash_point.h"
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

Fd Fd::open(const std::string& path, int flags, mode_t mode, int code) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("cannot open " + path, errno, code);
  return Fd(fd);
}

Fd Fd::open_if_exists(const std::string& path, int flags, int code) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return Fd();
  if (fd < 0) throw_errno("cannot open " + path, errno, code);
  return Fd(fd);
}

int Fd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

FileLock FileLock::exclusive(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600));
  // On a read-only filesystem an existing lock still locks (flock needs no write access): DEL
  // then gets as far as it can and names what it could not remove.
  if (!fd && errno == EROFS)
    fd = Fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open " + path, errno, kErrIo);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw Error(kErrIo, "lock file is not a regular file", path);
  }
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_errno("failed to lock " + path, errno, kErrIo);
  }
  return FileLock(std::move(fd));
}

void ensure_dir(const std::string& path, mode_t mode) {
  // The whole path first: on every call but a directory's first, one mkdir instead of one per
  // component.
  const bool made = ::mkdir(path.c_str(), mode) == 0 || errno == EEXIST;
  for (size_t pos = 1; !made && pos <= path.size(); ++pos) {
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

std::optional<std::string> read_file(const std::string& path, int code, size_t max_size) {
  Fd fd = Fd::open_if_exists(path, O_RDONLY | O_NONBLOCK | O_NOCTTY, code);
  if (!fd) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path, errno, code);
  if (!S_ISREG(st.st_mode)) {
    throw Error(code, "not a regular file",
                path + (S_ISDIR(st.st_mode)    ? " is a directory"
                        : S_ISFIFO(st.st_mode) ? " is a FIFO"
                                               : " is a device or socket"));
  }
  if (static_cast<size_t>(st.st_size) > max_size) {
    throw Error(code, "file too large",
                path + " has " + std::to_string(st.st_size) + " bytes, at most " +
                    std::to_string(max_size) + " are read");
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("failed to read " + path, errno, kErrIo);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_size) throw Error(code, "file too large", path);
  }
  return out;
}

std::string read_all(int fd, const std::string& what) {
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("failed to read " + what, errno, kErrIo);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

void write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("failed to write " + what, errno, kErrIo);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

namespace {

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd) ::fsync(fd.get());  // best effort: not every filesystem can
}

// The fixed name an unnamed temp file takes on its way to replacing `path`: ".<name>.tmp".
std::string dot_tmp(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos
             ? "." + path + ".tmp"
             : path.substr(0, slash + 1) + "." + path.substr(slash + 1) + ".tmp";
}

// A fully written (and, when `sync`, fsynced) file for `path`. Where the filesystem can
// (O_TMPFILE: tmpfs, ext4, xfs, btrfs) it has no name until it is linked into place, so a kill
// -9 at any instant before that leaves nothing behind; elsewhere it is a hidden temp file next to
// `path` (".name.tmp-pid-n", which directory scans looking for leases skip), removed on
// destruction unless renamed or linked away.
class TempFile {
 public:
  TempFile(const std::string& path, std::string_view data, mode_t mode, bool sync = true)
      : path_(path) {
    const std::string dir = dir_of(path);
    fd_ = Fd(::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, mode));
    if (!fd_) {
      if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
        throw_errno("failed to create " + path, errno, kErrIo);
      }
      create_named(mode);
    }
    const std::string& what = name_.empty() ? path : name_;
    try {
      write_all(fd_.get(), data, what);
      if (::fchmod(fd_.get(), mode) != 0) throw_errno("failed to chmod " + what, errno, kErrIo);
      if (sync && ::fsync(fd_.get()) != 0) throw_errno("failed to sync " + what, errno, kErrIo);
      crash_point("temp-file-written");
    } catch (...) {
      if (!name_.empty()) ::unlink(name_.c_str());
      throw;
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!name_.empty()) ::unlink(name_.c_str());
  }

  // Gives the file the name `target` as link(2) does: false when `target` exists.
  bool link_to(const std::string& target) {
    int rc = 0;
    if (name_.empty()) {
      const std::string self = "/proc/self/fd/" + std::to_string(fd_.get());
      rc = ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, target.c_str(), AT_SYMLINK_FOLLOW);
      // Without /proc, AT_EMPTY_PATH (which needs CAP_DAC_READ_SEARCH) is the other way.
      if (rc != 0 && errno == ENOENT && ::access("/proc/self/fd", F_OK) != 0) {
        rc = ::linkat(fd_.get(), "", AT_FDCWD, target.c_str(), AT_EMPTY_PATH);
      }
    } else {
      rc = ::link(name_.c_str(), target.c_str());
    }
    if (rc == 0) return true;
    if (errno == EEXIST) return false;
    throw_errno("failed to create " + target, errno, kErrIo);
  }

  // Replaces `path` with the file as rename(2) does. An unnamed file goes straight to `path`
  // when nothing is there yet; otherwise it is first linked to `.name.tmp` (rename(2) cannot
  // take an fd), a fixed name that remove_file(path) also removes, so a kill between the link
  // and the rename leaves nothing that DEL does not clean.
  void replace() {
    if (name_.empty()) {
      if (link_to(path_)) return;
      const std::string tmp = dot_tmp(path_);
      for (int attempt = 0;; ++attempt) {
        if (link_to(tmp)) {
          crash_point("temp-file-named");
          if (::rename(tmp.c_str(), path_.c_str()) == 0) return;
          if (errno != ENOENT || attempt >= 16) {
            const int err = errno;
            ::unlink(tmp.c_str());
            throw_errno("failed to rename into " + path_, err, kErrIo);
          }
          continue;  // a concurrent remove_file took it: link again
        }
        // A killed writer's, or a concurrent one's between its link and its rename: that one
        // links again (above), and the last rename wins as it would anyway.
        if (attempt >= 16) throw Error(kErrIo, "failed to create a temp file", tmp);
        ::unlink(tmp.c_str());
      }
    }
    if (::rename(name_.c_str(), path_.c_str()) != 0) {
      throw_errno("failed to rename into " + path_, errno, kErrIo);
    }
    name_.clear();
  }

 private:
  std::string temp_name() const {
    static std::mt19937_64 rng{std::random_device{}()};
    auto slash = path_.rfind('/');
    std::string dir = slash == std::string::npos ? "" : path_.substr(0, slash + 1);
    std::string base = slash == std::string::npos ? path_ : path_.substr(slash + 1);
    return dir + "." + base + ".tmp-" + std::to_string(::getpid()) + "-" +
           std::to_string(rng() % 1000000);
  }

  void create_named(mode_t mode) {
    for (int attempt = 0; attempt < 16 && !fd_; ++attempt) {
      name_ = temp_name();
      fd_ = Fd(::open(name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
      if (!fd_ && errno != EEXIST) {
        std::string failed = std::move(name_);
        name_.clear();
        throw_errno("failed to create " + failed, errno, kErrIo);
      }
    }
    if (!fd_) {
      name_.clear();
      throw Error(kErrIo, "failed to create a temp file", path_);
    }
  }

  std::string path_;
  std::string name_;  // empty while the file has no name of its own
  Fd fd_;
};

}  // namespace

void atomic_write(const std::string& path, std::string_view data, mode_t mode) {
  TempFile tmp(path, data, mode);
  tmp.replace();
  fsync_dir(dir_of(path));
  crash_point("file-written");
}

void atomic_replace(const std::string& path, std::string_view data, mode_t mode) {
  TempFile tmp(path, data, mode, /*sync=*/false);
  tmp.replace();
  crash_point("file-written");
}

void overwrite_in_place(const std::string& path, std::string_view data, mode_t mode) {
  const Fd fd = Fd::open(path, O_WRONLY | O_CREAT | O_NOFOLLOW, mode);
  write_all(fd.get(), data, path);  // from offset 0: the file was just opened, without O_APPEND
  if (::ftruncate(fd.get(), static_cast<off_t>(data.size())) != 0) {
    throw_errno("failed to truncate " + path, errno, kErrIo);
  }
  crash_point("file-written");
}

bool create_exclusive(const std::string& path, std::string_view data, mode_t mode) {
  TempFile tmp(path, data, mode, /*sync=*/false);
  if (!tmp.link_to(path)) return false;
  crash_point("file-created");
  return true;
}

bool remove_file(const std::string& path) {
  // What a writer of `path` killed between naming its temp file and the rename left (TempFile).
  ::unlink(dot_tmp(path).c_str());
  if (::unlink(path.c_str()) == 0) {
    crash_point("file-removed");
    return true;
  }
  const int err = errno;
  if (err == ENOENT) return false;
  // A read-only filesystem refuses an unlink before it looks the name up: a file that is not
  // there is still absent, not an error (DEL of what was never added).
  struct stat st {};
  if (err == EROFS && ::lstat(path.c_str(), &st) != 0 && errno == ENOENT) return false;
  throw_errno("failed to remove " + path, err, kErrIo);
}

std::vector<DirEntry> list_dir_inodes(const std::string& dir) {
  std::vector<DirEntry> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return out;
    throw_errno("failed to list " + dir, errno, kErrIo);
  }
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back({std::move(name), e->d_ino, e->d_type});
  }
  return out;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : list_dir_inodes(dir)) out.push_back(std::move(e.name));
  return out;
}

std::string sibling_executable(std::string_view name) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string self = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  auto slash = self.rfind('/');
  std::string dir = slash == std::string::npos ? std::string(".") : self.substr(0, slash);
  return dir + "/" + std::string(name);
}

}  // namespace cni
