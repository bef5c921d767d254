#pragma once
// The lease directory, byte-compatible with the reference host-local, so that either plugin
// can take over a directory the other wrote:
//   <dataDir>/<network>/<ip>                 "<containerID>\r\n<ifname>", mode 0600; files from
//                                            old versions hold only "<containerID>"
//   <dataDir>/<network>/last_reserved_ip.<i> the address last handed out from range set i
//   <dataDir>/<network>/lock                 flock(2)ed around every read-modify-write
// Ours also leaves, only when killed mid-write, hidden ".<name>.tmp-<pid>-<n>" files; they are
// never leases and whoever next holds the lock removes them (allocator.cc live_leases), as it
// removes empty lease files (the reference killed between create and write, or a power cut).
//
// The owner index, ours alone, outside the lease directory so that the reference never sees it
// and the directory stays file for file what the reference writes:
//   <dataDir>/.tether-owners/<network>/<ip>,<ifname>:<containerID>
// each a hard link to the lease <ip> (same inode, hence same content). It names every lease's
// holder without opening the lease: listing both directories (readdir gives the inode numbers)
// is all ADD, DEL and CHECK read, however many leases there are. An entry is trusted only while
// it is the same inode as the lease of its address; one that is not (the reference released the
// lease, perhaps leased the address again) is stale and removed. A lease with no entry (written
// by the reference or an older tether, or a kill between the lease's link and the entry's) is
// read as before and then indexed ("adopted"). Network names cannot start with ".", so the
// index cannot collide with a network; ifnames cannot contain ":", so the entry's name parses
// back to exactly one (containerID, ifname).
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/files.h"
#include "common/ip.h"
#include "plugins/ipam-host-local/attachment.h"

namespace cni::hostlocal {

struct Lease {
  IpAddr ip;
  std::string file;   // the name in the directory
  std::string owner;  // the content, surrounding whitespace trimmed (as the reference compares)
  std::string index_entry;  // its name in the owner index; empty when it has none

  // The reference's two matches: the full "<id>\r\n<ifname>", or a legacy file naming only <id>.
  bool held_by(const Attachment& a) const;
  bool legacy_held_by(const std::string& container_id) const;
};

// The name of a lease file: the address as Go's net.IP.String() prints it, which IpAddr::str()
// matches for every address a range can hold (IPv4-mapped ones are canonicalized to IPv4).
std::string lease_file_name(const IpAddr& ip);

// The owner index's name for `ip` leased to `a`; empty when `a` cannot be indexed (an ifname
// with ":", an ID with "/", a name too long), then its leases are read instead.
std::string index_entry_name(const IpAddr& ip, const Attachment& a);

class LeaseStore {
 public:
  // Creates `dir` (mode 0755) when missing and takes its lock for the store's lifetime.
  // Throws Error code 5 when the directory cannot be created or locked.
  static LeaseStore open(const std::string& dir);
  // As open(), but nullopt when `dir` does not exist (then nothing was ever leased there), so
  // that DEL, CHECK and GC create nothing.
  static std::optional<LeaseStore> open_existing(const std::string& dir);

  const std::string& dir() const { return dir_; }

  // Every lease file (a name that parses as an address), read now.
  std::vector<Lease> leases() const;

  // Every lease, with its holder from the owner index, reading only leases the index does not
  // name. With `repair` (the lock's holder may write): removes temp files and stale index
  // entries, and indexes what it had to read. Without, changes nothing.
  std::vector<Lease> scan(bool repair);
  // The names of the lease files, nothing read.
  std::vector<IpAddr> leased_addresses() const;

  // Creates the lease for `ip` only if none exists; false when one does. Throws code 5 when the
  // write fails (disk full, read-only), leaving nothing behind. Then indexes it; an index entry
  // that cannot be written only costs later calls a read of this lease.
  bool reserve(const IpAddr& ip, const Attachment& owner);
  // Removes the lease, then its index entry (a kill in between leaves a stale entry, which the
  // next scan removes).
  void release(const Lease& lease);

  std::optional<IpAddr> last_reserved(size_t set_index) const;
  void set_last_reserved(size_t set_index, const IpAddr& ip);

  // Throws Error code 5 unless a file can be created in the directory now (read-only mount,
  // full disk, permissions). Leaves nothing behind: the probe is an unnamed O_TMPFILE.
  void check_writable() const;

 private:
  LeaseStore(std::string dir, FileLock lock);
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  // Links lease `file` into the index as `entry`; false (and nothing left) when it cannot.
  bool link_index(const std::string& file, const std::string& entry);

  std::string dir_;
  std::string index_dir_;
  FileLock lock_;
};

}  // namespace cni::hostlocal
