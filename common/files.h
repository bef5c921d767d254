#pragma once
// Files that must survive crashes and concurrent plugin processes: an fd owner, flock, and
// writes that are never seen empty or partial.
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace cni {

// Move-only owner of a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  // open(2) with O_CLOEXEC added; throws Error(`code`) "cannot open <path>: <strerror>".
  static Fd open(const std::string& path, int flags, mode_t mode = 0, int code = kErrIo);
  // As open(), but a path that does not exist (ENOENT) is an empty Fd instead of an error.
  static Fd open_if_exists(const std::string& path, int flags, int code = kErrIo);
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  int get() const { return fd_; }
  int release();
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// An exclusive flock(2) on `path` (created 0600 when missing), released on destruction.
// flock, not fcntl locks: the reference host-local locks `<dir>/lock` the same way, so both
// implementations exclude each other on a shared data dir.
class FileLock {
 public:
  static FileLock exclusive(const std::string& path);

 private:
  explicit FileLock(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

// mkdir -p with `mode` for created components. Throws Error code 5 on failure.
void ensure_dir(const std::string& path, mode_t mode = 0755);

// The content of the regular file `path`, std::nullopt when it does not exist. Paths come from
// configs, so the file is opened O_NONBLOCK and checked with fstat before it is read: a FIFO, a
// directory or a device is Error(`code`) at once instead of a read that blocks forever (or never
// ends, /dev/zero); so is a file larger than `max_size`.
std::optional<std::string> read_file(const std::string& path, int code = kErrIo,
                                     size_t max_size = 16 << 20);

// Everything read from `fd` until end of file, and every byte of `data` written to it (EINTR and
// short writes retried). Throw Error code 5 naming `what`. Plain read(2)/write(2), no iostreams:
// a plugin that never touches them is spared their start-up (the locale, ~0.8 MB resident).
std::string read_all(int fd, const std::string& what);
void write_all(int fd, std::string_view data, const std::string& what);

// Replaces `path` atomically: temp file in the same directory, write, fsync, rename, fsync dir.
// Readers see the old content or the new, never an empty or partial file.
void atomic_write(const std::string& path, std::string_view data, mode_t mode = 0644);

// As atomic_write, without the fsyncs, for state that lives no longer than the running kernel's
// (a mirror of nftables elements: a reboot empties the ruleset too). Other processes see the old
// content or the new, never a partial file; after a power loss the file may be old or empty, so
// readers must tolerate that. Saves the milliseconds an fsync costs on a disk-backed /run.
void atomic_replace(const std::string& path, std::string_view data, mode_t mode = 0644);

// Overwrites `path` in place, creating it when missing: one write and an ftruncate, no temp
// file and no rename, so the directory does not change and no inode or block is freed (on ext4
// with online discard, the rename over the old file cost a synchronous discard). Not atomic: a
// kill -9 or a full disk between the two calls can leave the new bytes followed by the old ones.
// Only for small hints that every reader reads under a lock the writer holds, and that readers
// may find stale or garbled (host-local's last_reserved_ip.* and its seal's stamp).
void overwrite_in_place(const std::string& path, std::string_view data, mode_t mode = 0600);

// Creates `path` with `data` only if it does not exist, atomically: the content is written to a
// temp file which is then link(2)ed into place — link fails with EEXIST instead of replacing, so
// other processes, and a kill -9 at any instant, see the file complete or not at all. Returns
// false when `path` exists. Nothing is fsynced: a power loss may take the name or leave it
// empty, for records whose holder dies with the kernel anyway (host-local leases) and whose
// readers tolerate that. Saves a journal commit per file, milliseconds on a busy disk.
bool create_exclusive(const std::string& path, std::string_view data, mode_t mode = 0600);

// Removes `path`; true if it existed.
bool remove_file(const std::string& path);

// Names in `dir` (no "." or ".."), empty when the directory does not exist.
std::vector<std::string> list_dir(const std::string& dir);

// As list_dir, with each name's inode number and type as readdir reports them (no stat per
// name).
struct DirEntry {
  std::string name;
  ino_t ino;
  unsigned char type = 0;  // d_type: DT_DIR, DT_REG, ...; DT_UNKNOWN (0) where the fs won't say
};
std::vector<DirEntry> list_dir_inodes(const std::string& dir);

// "<directory of /proc/self/exe>/<name>": a tether executable installed beside the running one
// (the agent, the DNS daemon), wherever the runtime's CNI_PATH put both; "./<name>" when the
// kernel does not say where this one is.
std::string sibling_executable(std::string_view name);

}  // namespace cni
