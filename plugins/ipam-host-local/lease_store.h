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

  // The reference's two matches: the full "<id>\r\n<ifname>", or a legacy file naming only <id>.
  bool held_by(const Attachment& a) const;
  bool legacy_held_by(const std::string& container_id) const;
};

// The name of a lease file: the address as Go's net.IP.String() prints it, which IpAddr::str()
// matches for every address a range can hold (IPv4-mapped ones are canonicalized to IPv4).
std::string lease_file_name(const IpAddr& ip);

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

  // Creates the lease for `ip` only if none exists; false when one does. Throws code 5 when the
  // write fails (disk full, read-only), leaving nothing behind.
  bool reserve(const IpAddr& ip, const Attachment& owner);
  void release(const Lease& lease);

  std::optional<IpAddr> last_reserved(size_t set_index) const;
  void set_last_reserved(size_t set_index, const IpAddr& ip);

  // Throws Error code 5 unless a file can be created in the directory now (read-only mount,
  // full disk, permissions). Leaves nothing behind: the probe is an unnamed O_TMPFILE.
  void check_writable() const;

  // Removes the temp files of writers killed before they finished. Safe only because every
  // writer holds the lock while its temp file exists, and we hold it now.
  void remove_stale_temps();

 private:
  LeaseStore(std::string dir, FileLock lock) : dir_(std::move(dir)), lock_(std::move(lock)) {}
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
  FileLock lock_;
};

}  // namespace cni::hostlocal
