#pragma once
// The lease directory, byte-compatible with the reference host-local, so that either plugin
// can take over a directory the other wrote:
//   <dataDir>/<network>/<ip>                 "<containerID>\r\n<ifname>", mode 0600; files from
//                                            old versions hold only "<containerID>"; <ip> as
//                                            lease_file_name() spells it
//   <dataDir>/<network>/last_reserved_ip.<i> the address last handed out from range set i
//   <dataDir>/<network>/lock                 flock(2)ed around every read-modify-write
// Ours also leaves, only when killed mid-write, hidden ".<name>.tmp-<pid>-<n>" files; they are
// never leases and whoever next holds the lock removes them (allocator.cc live_leases), as it
// removes empty lease files (the reference killed between create and write, or a power cut).
//
// The owner index, ours alone, outside the lease directory so that the reference never sees it
// and the directory stays file for file what the reference writes:
//   <dataDir>/.tether-owners/<network>/<ifname>:<containerID>/<ip>
//                                            a hard link to the lease <ip> (same inode, hence
//                                            same content), one directory per holder
//   <dataDir>/.tether-owners/<network>/sealed
//                                            "<sec>.<nsec>": the lease directory's mtime as
//                                            tether left it, with every lease indexed
// An entry is trusted only while it is the same inode as the lease of its address; one that is
// not (the reference released the lease, perhaps leased the address again) is stale. A lease
// with no entry (written by the reference or an older tether, or a kill between the lease's
// link and the entry's) is read and then indexed ("adopted"). Network names cannot start with
// ".", so the index cannot collide with a network; ifnames cannot contain ":", so a holder's
// directory name parses back to exactly one (containerID, ifname).
//
// The seal is what makes a call's cost independent of the number of leases. After its last
// write, a call that knows every lease to be indexed sets the lease directory's mtime to a
// second in the past and records that time in `sealed`. Any later change of the directory by
// anyone (a lease created or removed, by us or the reference, a temp file a killed writer left)
// sets its mtime to the present, which can never equal the recorded past.
// So a call that finds the two equal knows the index is still complete, and reads only the
// holder's own directory and the names it probes: no listing of the leases. Otherwise it lists
// both directories (readdir gives the inode numbers), adopts and repairs as above, and seals
// again at its end. Leases that cannot be indexed (a legacy one, a container ID with "/" or a
// name too long) leave the store unsealed, and each call lists as before.
#include <cstddef>
#include <optional>
#include <set>
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

// The address a directory entry is the lease of: only a name that is lease_file_name() of its
// address, as the reference and tether write them. Anything else ("fd00::0:04", "::ffff:10.1.0.7",
// lock, last_reserved_ip.*, temp files) is foreign and never a lease: the reference reserves an
// address by creating exactly that name, so another spelling could not keep it from being
// handed out twice, and a call that probes one name (the sealed store) must see what a listing
// sees.
std::optional<IpAddr> lease_address(std::string_view name);

// The owner index's name for `ip` leased to `a`, "<ifname>:<containerID>/<ip>"; empty when `a`
// cannot be indexed (an ifname with ":", an ID with "/", a name too long), then its leases are
// read instead.
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
  // entries, and indexes what it had to read; the store is then complete when every lease but
  // the empty ones (which the caller removes) has an entry. Without, changes nothing.
  std::vector<Lease> scan(bool repair);

  // Whether the index names every lease (header comment): sealed, and the seal still holds, or
  // made so by scan(repair) and this store's own writes since.
  bool indexed() const { return known_ && unindexed_.empty(); }
  // The leases of `a`, from its holder's directory in the index alone; only meaningful when
  // indexed(): then they are all of a's (a legacy lease is never indexed).
  std::vector<Lease> leases_of(const Attachment& a) const;
  // Whether the lease file of `ip` exists, nothing read.
  bool leased(const IpAddr& ip) const;
  // A call's last step after its writes: seals the store when it is indexed(), and removes the
  // seal otherwise. Never fails: an unsealed store only costs the next call a listing.
  void seal();
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

  // Whether `sealed` still names the lease directory's mtime.
  bool seal_holds() const;

  std::string dir_;
  std::string index_dir_;
  FileLock lock_;
  // Whether unindexed_ is known to name every lease without an index entry: the seal held at
  // open (none), or scan(repair) listed them; this store's own writes keep it up to date.
  bool known_ = false;
  std::set<std::string> unindexed_;
  bool sealed_ = false;  // the seal held at open and nothing was written since
};

}  // namespace cni::hostlocal
