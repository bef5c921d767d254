#pragma once
// Where forwarded queries go: the servers, their precedence (per-container > per-network >
// host resolv.conf), the host's resolv.conf and a watch that notices when it changes.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/files.h"
#include "common/ip.h"

namespace cni::dns {

// glibc reads at most three nameservers; aardvark-dns and Docker do the same.
inline constexpr size_t kMaxUpstreams = 3;
// The whole budget for one forwarded query, shared by its servers (aardvark-dns#482: a dead
// first server with a 5 s timeout each made clients give up before the second was tried).
inline constexpr int kForwardBudgetMs = 5000;

struct Upstream {
  IpAddr addr;
  uint16_t port = 53;
  uint32_t scope_id = 0;  // interface index for IPv6 link-local servers ("fe80::1%eth0")
  bool operator==(const Upstream&) const = default;
  std::string str() const;
  socklen_t to_sockaddr(sockaddr_storage* ss) const;
};

// "10.0.0.1", "10.0.0.1:5353", "fd00::1", "[fd00::1]:5353", "fe80::1%eth0". nullopt if invalid
// (including an unknown interface after '%').
std::optional<Upstream> parse_upstream(std::string_view text);

// The nameserver lines of a resolv.conf, leniently: other lines, comments and unparsable
// addresses are skipped (podman#13926: one bad line must not lose the others).
std::vector<Upstream> parse_resolv_conf(std::string_view text);

// The first non-empty list in precedence order, without servers that are our own listening
// addresses (a query sent there would loop back to us), at most kMaxUpstreams.
std::vector<Upstream> select_upstreams(const std::vector<Upstream>& container,
                                       const std::vector<Upstream>& network,
                                       const std::vector<Upstream>& host,
                                       const std::vector<IpAddr>& own_addresses);

// The per-server timeout for `count` servers within kForwardBudgetMs.
int per_server_timeout_ms(size_t count);

// The host's resolv.conf, re-read when inotify reports a change to it or to the file its
// symlink points at (resolv.conf is usually replaced by rename, so the directories are watched).
class ResolvConf {
 public:
  explicit ResolvConf(std::string path);
  const std::string& path() const { return path_; }
  int fd() const { return inotify_.get(); }  // readable when something may have changed
  // Drains the inotify events and re-reads the file if one concerned it. True when re-read.
  bool on_readable();
  void reload();
  const std::vector<Upstream>& servers() const { return servers_; }

 private:
  void watch();
  std::string path_;
  Fd inotify_;
  std::vector<std::string> names_;  // base names that matter in the watched directories
  std::vector<Upstream> servers_;
};

}  // namespace cni::dns
