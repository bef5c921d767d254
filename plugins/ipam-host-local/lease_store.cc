#include "plugins/ipam-host-local/lease_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <unordered_map>

#include "common/crash_point.h"
#include "common/error.h"
#include "plugins/ipam-host-local/range.h"

namespace cni::hostlocal {

namespace {

constexpr const char* kLastReservedPrefix = "last_reserved_ip.";
constexpr const char* kIndexDir = ".tether-owners";
constexpr const char* kSealName = "sealed";  // no ":", so never a holder's directory
constexpr size_t kMaxNameLen = 255;
constexpr const char* kLineBreak = "\r\n";

// Go's strings.TrimSpace, for the ASCII whitespace a lease file can contain.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\v\f\r";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// files.h's TempFile names: ".<name>.tmp-<pid>-<n>" (a filesystem without O_TMPFILE) or
// ".<name>.tmp" (common/files.cc links an O_TMPFILE file there on its way into place).
bool is_temp_name(const std::string& name) {
  return name.size() > 1 && name[0] == '.' &&
         (name.find(".tmp-") != std::string::npos || name.ends_with(".tmp"));
}

}  // namespace

bool Lease::held_by(const Attachment& a) const {
  return owner == a.container_id + kLineBreak + a.ifname;
}

bool Lease::legacy_held_by(const std::string& container_id) const { return owner == container_id; }

std::string lease_file_name(const IpAddr& ip) { return ip.str(); }

std::optional<IpAddr> lease_address(std::string_view name) {
  auto ip = IpAddr::parse(name);
  // The reference never names a lease "::ffff:a.b.c.d": it prints an IPv4 address dotted.
  if (!ip || ip->unmapped() != *ip || lease_file_name(*ip) != name) return std::nullopt;
  return ip;
}

namespace {

// The holder's directory in the index, "<ifname>:<containerID>"; empty when `a` cannot be
// indexed. A NUL would end the path the kernel sees: a lease another writer left naming
// "c\0x" would be linked as the holder directory "eth0:c" itself.
std::string holder_dir(const Attachment& a) {
  constexpr std::string_view kNotInId("/ \t\n\v\f\r\0", 8);
  constexpr std::string_view kNotInIfname(":/ \t\n\v\f\r\0", 9);
  if (a.ifname.empty() || a.container_id.empty() ||
      a.ifname.find_first_of(kNotInIfname) != std::string::npos ||
      a.container_id.find_first_of(kNotInId) != std::string::npos) {
    return {};
  }
  std::string holder = a.ifname + ":" + a.container_id;
  if (holder.size() > kMaxNameLen) return {};
  return holder;
}

}  // namespace

std::string index_entry_name(const IpAddr& ip, const Attachment& a) {
  std::string holder = holder_dir(a);
  return holder.empty() ? holder : holder + "/" + lease_file_name(ip);
}

namespace {

// The attachment a lease's (trimmed) content names, when it is a current-format one.
std::optional<Attachment> owner_of(const std::string& content) {
  auto br = content.find(kLineBreak);
  if (br == std::string::npos) return std::nullopt;  // legacy: the container ID alone
  return Attachment{content.substr(0, br), content.substr(br + 2)};
}

// "<store dir's parent>/.tether-owners/<store dir's name>".
std::string index_dir_for(const std::string& dir) {
  auto slash = dir.find_last_of('/');
  if (slash == std::string::npos) return std::string(kIndexDir) + "/" + dir;
  return dir.substr(0, slash + 1) + kIndexDir + "/" + dir.substr(slash + 1);
}

// The holder a directory of the index names: "<ifname>:<containerID>" as "<id>\r\n<ifname>".
std::optional<std::string> holder_of(const std::string& name) {
  auto colon = name.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == name.size()) return std::nullopt;
  return name.substr(colon + 1) + kLineBreak + name.substr(0, colon);
}

bool is_dir(const std::string& path, unsigned char type) {
  if (type != DT_UNKNOWN) return type == DT_DIR;
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string mtime_text(const timespec& t) {
  return std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec);
}

}  // namespace

LeaseStore::LeaseStore(std::string dir, FileLock lock)
    : dir_(std::move(dir)), index_dir_(index_dir_for(dir_)), lock_(std::move(lock)) {
  sealed_ = known_ = seal_holds();
}

bool LeaseStore::seal_holds() const {
  std::optional<std::string> text;
  try {
    text = read_file(index_dir_ + "/" + kSealName, kErrIo, 64);
  } catch (const Error&) {
    return false;
  }
  struct stat st {};
  return text && ::stat(dir_.c_str(), &st) == 0 && *text == mtime_text(st.st_mtim);
}

void LeaseStore::seal() {
  const std::string stamp = index_dir_ + "/" + kSealName;
  if (indexed() && sealed_) return;  // nothing written since the seal was found to hold
  if (indexed()) {
    // A second in the past: every later change of the directory, by anyone, stamps the present.
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const timespec times[2] = {{0, UTIME_OMIT}, {now.tv_sec - 1, now.tv_nsec}};
    if (::utimensat(AT_FDCWD, dir_.c_str(), times, 0) == 0) {
      try {
        ensure_dir(index_dir_, 0755);
        // In place, as the hint (set_last_reserved): a rename over the old stamp frees its
        // block, a synchronous discard on ext4 mounted with discard. Only tether reads it, under
        // the lock; a kill or a power cut mid-write leaves it old, empty or garbled, none of
        // which equals the directory's mtime, so the next call lists and seals again.
        overwrite_in_place(stamp, mtime_text(times[1]), 0600);
        sealed_ = true;
        return;
      } catch (const Error& e) {
        spdlog::debug("cannot seal {}: {}", dir_, e.what());
      }
    }
  }
  ::unlink(stamp.c_str());
}

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
    auto ip = lease_address(name);
    if (!ip) continue;  // lock, last_reserved_ip.*, temp files, anything foreign
    auto content = read_file(path(name));
    if (!content) continue;
    out.push_back(Lease{*ip, std::move(name), trim(*content), {}});
  }
  return out;
}

std::vector<IpAddr> LeaseStore::leased_addresses() const {
  std::vector<IpAddr> out;
  for (const auto& name : list_dir(dir_)) {
    if (auto ip = lease_address(name)) out.push_back(*ip);
  }
  return out;
}

namespace {

using Inodes = std::unordered_map<std::string, ino_t>;  // name -> inode
using Indexed =
    std::unordered_map<std::string, std::pair<std::string, std::string>>;  // owner, entry

// The lease files of `dir` in directory order, with their addresses, and their inodes in
// `files`; temp files are removed with `repair`.
std::vector<std::pair<std::string, IpAddr>> scan_lease_files(const std::string& dir, bool repair,
                                                             Inodes& files) {
  std::vector<std::pair<std::string, IpAddr>> order;
  for (auto& e : list_dir_inodes(dir)) {
    if (is_temp_name(e.name)) {
      if (repair) remove_file(dir + "/" + e.name);
      continue;
    }
    auto ip = lease_address(e.name);
    if (!ip) continue;  // lock, last_reserved_ip.*, anything foreign
    files.emplace(e.name, e.ino);
    order.emplace_back(std::move(e.name), *ip);
  }
  return order;
}

// Removes an index entry that names no lease (`repair` only); one that stays is ignored.
void drop_entry(const std::string& path, bool repair) {
  if (!repair) return;
  try {
    remove_file(path);
  } catch (const Error&) {
    // a stale entry is ignored as long as it stays
  }
}

// The holders the index names, by lease file. With `repair`, removes what names none: entries
// that are not the lease's inode, a second holder's link to a lease already named, the flat
// "<ip>,<ifname>:<id>" entries of tether before the holders' directories, and directories left
// empty.
Indexed scan_index(const std::string& index_dir, const Inodes& files, bool repair) {
  Indexed indexed;
  for (auto& d : list_dir_inodes(index_dir)) {
    if (d.name == kSealName) continue;
    const std::string sub = index_dir + "/" + d.name;
    std::optional<std::string> holder = holder_of(d.name);
    if (!is_dir(sub, d.type)) {
      drop_entry(sub, repair);
      continue;
    }
    if (!holder) continue;  // not ours to judge: no holder's directory
    bool any = false;
    for (auto& e : list_dir_inodes(sub)) {
      auto it = files.find(e.name);
      if (it == files.end() || it->second != e.ino ||
          !indexed.emplace(e.name, std::make_pair(*holder, d.name + "/" + e.name)).second) {
        drop_entry(sub + "/" + e.name, repair);
        continue;
      }
      any = true;
    }
    if (repair && !any) ::rmdir(sub.c_str());
  }
  return indexed;
}

}  // namespace

std::vector<Lease> LeaseStore::scan(bool repair) {
  if (repair) sealed_ = false;
  Inodes files;
  std::vector<std::pair<std::string, IpAddr>> order = scan_lease_files(dir_, repair, files);
  Indexed indexed = scan_index(index_dir_, files, repair);

  std::vector<Lease> out;
  out.reserve(order.size());
  for (auto& [name, ip] : order) {
    if (auto it = indexed.find(name); it != indexed.end()) {
      out.push_back(
          Lease{ip, std::move(name), std::move(it->second.first), std::move(it->second.second)});
      continue;
    }
    auto content = read_file(path(name));
    if (!content) continue;
    Lease l{ip, std::move(name), trim(*content), {}};
    if (repair) {
      if (auto who = owner_of(l.owner)) {
        std::string entry = index_entry_name(ip, *who);
        // Only when the name parses back to this very content.
        if (!entry.empty() && who->container_id + kLineBreak + who->ifname == l.owner &&
            link_index(l.file, entry)) {
          l.index_entry = std::move(entry);
        }
      }
    }
    out.push_back(std::move(l));
  }
  if (repair) {
    known_ = true;
    unindexed_.clear();
    for (const Lease& l : out) {
      if (l.index_entry.empty()) unindexed_.insert(l.file);
    }
  }
  return out;
}

std::vector<Lease> LeaseStore::leases_of(const Attachment& a) const {
  std::vector<Lease> out;
  const std::string holder = holder_dir(a);
  if (holder.empty()) return out;  // never indexed: in an indexed store, it holds nothing
  for (auto& e : list_dir_inodes(index_dir_ + "/" + holder)) {
    auto ip = lease_address(e.name);
    struct stat st {};
    if (!ip || ::lstat(path(e.name).c_str(), &st) != 0 || st.st_ino != e.ino) continue;  // stale
    out.push_back(
        Lease{*ip, e.name, a.container_id + kLineBreak + a.ifname, holder + "/" + e.name});
  }
  return out;
}

bool LeaseStore::leased(const IpAddr& ip) const {
  struct stat st {};
  if (::lstat(path(lease_file_name(ip)).c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  throw_errno("failed to stat " + path(lease_file_name(ip)), errno, kErrIo);
}

bool LeaseStore::link_index(const std::string& file, const std::string& entry) {
  std::string target = index_dir_ + "/" + entry;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (::link(path(file).c_str(), target.c_str()) == 0) return true;
    if (errno == ENOENT) {
      try {
        ensure_dir(target.substr(0, target.find_last_of('/')), 0755);
      } catch (const Error&) {
        return false;
      }
    } else if (errno == EEXIST) {
      ::unlink(target.c_str());  // stale: we hold the lock, and scan found no live entry
    } else {
      return false;  // read-only, full, no hard links: the lease is read instead
    }
  }
  return false;
}

// Crash safety. A lease is what keeps two containers from sharing an address, and the only
// record of who holds it; an empty or half-written lease file blocks its address for the
// reference, and no DEL can tell whose it is. The reference creates the file with O_EXCL and then
// writes, so a kill -9 or a full disk in between leaves exactly that. We write the complete content
// to a hidden temp file and link(2) it to the address's name (files.h create_exclusive): link is
// atomic and, unlike rename, fails with EEXIST instead of replacing, so the lease appears whole
// or not at all and O_EXCL's "first one wins" still holds. A kill before the link leaves only
// the temp file (not a lease: its name is no address), removed by the next ADD, DEL or GC under
// the lock; a kill after it leaves a complete lease owned by (containerID, ifname), which the
// runtime's DEL for the failed ADD, or GC, releases.
// Nothing is fsynced (the reference does not either). A power cut kills every container the
// leases name; what it can leave is a lease lost, or a name with no data (delayed allocation),
// which under the lock can only be such a remnant: ADD, DEL and GC remove empty lease files
// (allocator.cc live_leases), and a sealed store still names its holder through the index entry,
// the same inode, so the runtime's DEL after the reboot releases it. The fsync before the link
// was host-local's largest wait in an ADD: 0.3 ms on this machine's idle disk, tens of ms on a
// busy one.
bool LeaseStore::reserve(const IpAddr& ip, const Attachment& owner) {
  crash_point("before-lease-write");
  bool created = create_exclusive(path(lease_file_name(ip)),
                                  owner.container_id + kLineBreak + owner.ifname, 0600);
  crash_point("after-lease-write");
  if (created) {
    sealed_ = false;
    std::string entry = index_entry_name(ip, owner);
    if (entry.empty() || !link_index(lease_file_name(ip), entry)) {
      unindexed_.insert(lease_file_name(ip));
    }
  }
  return created;
}

void LeaseStore::release(const Lease& lease) {
  sealed_ = false;
  remove_file(path(lease.file));
  unindexed_.erase(lease.file);
  if (!lease.index_entry.empty()) {
    const std::string entry = index_dir_ + "/" + lease.index_entry;
    try {
      remove_file(entry);
      ::rmdir(entry.substr(0, entry.find_last_of('/')).c_str());  // fails while others remain
    } catch (const Error&) {
      // left stale: not the lease's inode once the address is leased again, and the next scan
      // removes it
    }
  }
}

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

// The hint is overwritten in place (files.h overwrite_in_place), as the reference's
// os.WriteFile does, under the lock that every reader holds too: no temp file, no rename, so
// the lease directory does not change (a sealed store stays sealed) and no old inode is freed,
// which on ext4 with online discard cost a synchronous discard per ADD. A kill -9 mid-write, a
// full disk or a power cut can leave it stale, empty or garbled: it is only a hint, and both
// readers, ours and the reference's, fall back to the range start when it is not an address of
// the set (and a wrong address of the set only moves where round-robin resumes).
void LeaseStore::set_last_reserved(size_t set_index, const IpAddr& ip) {
  overwrite_in_place(path(kLastReservedPrefix + std::to_string(set_index)), lease_file_name(ip),
                     0600);
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

}  // namespace cni::hostlocal
