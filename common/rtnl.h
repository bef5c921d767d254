#pragma once
// rtnetlink requests that libnl-route has no call for, sent on an nl::Socket's descriptor: a
// dump of one interface's addresses filtered by the kernel, and the per-device settings that
// rtnetlink can read and write (RTM_GETNETCONF, IFLA_AF_SPEC). Each replaces a /proc/sys
// lookup or a dump of every address of the namespace, both of which grow with the number of
// containers on the host (docs/benchmarks.md, findings 2 and 3).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/files.h"
#include "common/netlink.h"

namespace cni::nl {

// The addresses of `ifindex` (0: of every link) of `family` (AF_UNSPEC: of both). The request is a
// strict dump (NETLINK_GET_STRICT_CHK, Linux 4.20) that the kernel filters by interface and family,
// so its cost does not depend on how many other interfaces the namespace has; older kernels dump
// everything and the filter here keeps the answer the same.
std::vector<Address> dump_addresses(Socket& sock, int ifindex, int family);

// NETCONFA_FORWARDING of the namespace ("all": net.ipv4.ip_forward, net.ipv6.conf.all.forwarding)
// by RTM_GETNETCONF; nullopt when the kernel does not report it.
std::optional<bool> get_forwarding(Socket& sock, int family);

// One IPV4_DEVCONF_* value of an interface, read from RTM_GETLINK's IFLA_AF_SPEC/AF_INET
// (nullopt when the link has no IPv4 settings), and written by RTM_SETLINK: net.ipv4.conf.<dev>.*
// without /proc/sys.
std::optional<uint32_t> get_ipv4_devconf(Socket& sock, int ifindex, int knob);
void set_ipv4_devconf(Socket& sock, int ifindex, int knob, uint32_t value);

// IFLA_INET6_ADDR_GEN_MODE (IN6_ADDR_GEN_MODE_*): with NONE set before the link goes up, the
// kernel gives it no IPv6 link-local address (and so no DAD, route or multicast join for one).
void set_ipv6_addr_gen_mode(Socket& sock, int ifindex, uint8_t mode);

// A directory under /proc/sys opened once, in the calling thread's netns, its knobs then opened
// relative to it: every path walk from /proc/sys compares the "net" entry of every namespace on
// the host, so one walk for several knobs (IPv6 devconf has no rtnetlink setter).
class SysctlDir {
 public:
  explicit SysctlDir(const std::string& key);  // e.g. "net/ipv6/conf"; absent is not an error
  bool exists() const { return static_cast<bool>(fd_); }
  // nullopt when the knob (or the directory) does not exist.
  std::optional<std::string> read(const std::string& rel) const;
  // Throws when the knob cannot be written (or does not exist).
  void write(const std::string& rel, std::string_view value) const;

 private:
  std::string path_;
  Fd fd_;
};

}  // namespace cni::nl
