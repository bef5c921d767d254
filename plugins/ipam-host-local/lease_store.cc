#include "plugins/ipam-host-local/lease_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/error.h"
#include "plugins/ipam-host-local/crash_point.h"
#include "plugins/ipam-host-local/range.h"

namespace cni::hostlocal {

namespace {

constexpr const char* kLastReservedPrefix = "last_reserved_ip.";
constexpr const char* kLineBreak = "\r\n";

// Go's strings.TrimSpace, for the ASCII whitespace a lease file can contain.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\v\f\r";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// files.h's TempFile names: ".<name>.tmp-<pid>-<n>".
bool is_temp_name(const std::string& name) {
  return name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos;
}

}  // namespace

bool Lease::held_by(const Attachment& a) const {
  return owner == a.container_id + kLineBreak + a.ifname;
}

bool Lease::legacy_held_by(const std::string& container_id) const { return owner == container_id; }

std::string lease_file_name(const IpAddr& ip) { return ip.str(); }

LeaseStore LeaseStore::open(const std::string& dir) {
  ensure_dir(dir, 0755);
  return LeaseStore(dir, FileLock::exclusive(dir + "/lock"));
}

std::optional<LeaseStore> LeaseStore::open_existing(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("failed to stat " + dir, errno, kErrIo);
  }
  return open(dir);
}

std::vector<Lease> LeaseStore::leases() const {
  std::vector<Lease> out;
  for (auto& name : list_dir(dir_)) {
    auto ip = IpAddr::parse(name);
    if (!ip) continue;  // lock, last_reserved_ip.*, temp files, anything foreign
    auto content = read_file(path(name));
    if (!content) continue;
    out.push_back(Lease{ip->unmapped(), std::move(name), trim(*content)});
  }
  return out;
}

// Crash safety. A lease is what keeps two containers from sharing an address, and the only
// record of who holds it; an empty or half-written lease file would block its address forever
// (no DEL can tell whose it is). The reference creates the file with O_EXCL and then writes, so
// a kill -9 or a full disk in between leaves exactly that. We write the complete content to a
// hidden temp file, fsync it, and link(2) it to the address's name (files.h create_exclusive):
// link is atomic and, unlike rename, fails with EEXIST instead of replacing, so the lease
// appears whole or not at all and O_EXCL's "first one wins" still holds. The fsync before the
// link keeps that true across a power cut too (delayed allocation could otherwise leave the
// name with no data). The directory is not fsynced after the link: a lease lost with the power
// belonged to a container that died with it, and that commit would double the cost of an ADD
// on a busy disk. A kill before the link leaves only the temp file (not a lease: its name is
// no address), removed by the next ADD, DEL or GC under the lock; a kill after it leaves a
// complete lease owned by (containerID, ifname), which the runtime's DEL for the failed ADD, or
// GC, releases.
bool LeaseStore::reserve(const IpAddr& ip, const Attachment& owner) {
  crash_point("before-lease-write");
  bool created = create_exclusive(path(lease_file_name(ip)),
                                  owner.container_id + kLineBreak + owner.ifname, 0600,
                                  /*sync_dir=*/false);
  crash_point("after-lease-write");
  return created;
}

void LeaseStore::release(const Lease& lease) { remove_file(path(lease.file)); }

std::optional<IpAddr> LeaseStore::last_reserved(size_t set_index) const {
  std::optional<std::string> text;
  try {
    text = read_file(path(kLastReservedPrefix + std::to_string(set_index)));
  } catch (const Error&) {
    return std::nullopt;  // only a hint: an unreadable one costs round-robin, not the ADD
  }
  if (!text) return std::nullopt;
  auto ip = IpAddr::parse(trim(*text));
  if (!ip) return std::nullopt;
  return ip->unmapped();
}

// The hint is replaced by temp + rename without fsync (files.h atomic_replace): another process
// sees the old address or the new one, never a partial file, even after kill -9 or on a full
// disk. Durability would buy nothing: after a power cut a stale or empty hint only restarts
// round-robin (both readers, ours and the reference's, fall back to the range start), and the
// two fsyncs it would cost per range set are most of an ADD on a busy disk.
void LeaseStore::set_last_reserved(size_t set_index, const IpAddr& ip) {
  atomic_replace(path(kLastReservedPrefix + std::to_string(set_index)), lease_file_name(ip), 0600);
}

void LeaseStore::check_writable() const {
  Fd fd(::open(dir_.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
  if (!fd) {
    // Filesystems without O_TMPFILE still answer the permission and read-only questions.
    if (errno != EOPNOTSUPP && errno != EISDIR) {
      throw_errno("data dir " + dir_ + " is not writable", errno, kErrIo);
    }
    if (::access(dir_.c_str(), W_OK) != 0) {
      throw_errno("data dir " + dir_ + " is not writable", errno, kErrIo);
    }
    return;
  }
  // One byte really allocates a block, so a full disk shows too.
  if (::write(fd.get(), "x", 1) != 1) {
    throw_errno("data dir " + dir_ + " is not writable", errno, kErrIo);
  }
}

void LeaseStore::remove_stale_temps() {
  for (const auto& name : list_dir(dir_)) {
    if (is_temp_name(name)) remove_file(path(name));
  }
}

}  // namespace cni::hostlocal
