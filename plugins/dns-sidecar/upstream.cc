#include "plugins/dns-sidecar/upstream.h"

#include <arpa/inet.h>
#include <limits.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "common/error.h"
#include "common/push_unique.h"

namespace cni::dns {

std::string Upstream::str() const {
  std::string a = addr.str();
  if (scope_id != 0) {
    char name[IF_NAMESIZE] = {};
    a += '%';
    a += if_indextoname(scope_id, name) ? std::string(name) : std::to_string(scope_id);
  }
  if (port == 53) return a;
  return (addr.is_v4() ? a : "[" + a + "]") + ":" + std::to_string(port);
}

socklen_t Upstream::to_sockaddr(sockaddr_storage* ss) const {
  std::memset(ss, 0, sizeof(*ss));
  if (addr.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, addr.bytes(), 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  sin6->sin6_scope_id = scope_id;
  std::memcpy(&sin6->sin6_addr, addr.bytes(), 16);
  return sizeof(sockaddr_in6);
}

namespace {

std::optional<uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// "addr" or "addr%scope" (scope: interface name or index).
std::optional<Upstream> parse_host(std::string_view text) {
  Upstream u;
  auto pct = text.find('%');
  auto ip = IpAddr::parse(text.substr(0, pct));
  if (!ip) return std::nullopt;
  u.addr = *ip;
  if (pct != std::string_view::npos) {
    if (ip->is_v4()) return std::nullopt;
    std::string scope(text.substr(pct + 1));
    u.scope_id = if_nametoindex(scope.c_str());
    if (u.scope_id == 0) {
      auto n = parse_port(scope);  // a numeric index, within the same range
      if (!n) return std::nullopt;
      u.scope_id = *n;
    }
  }
  return u;
}

}  // namespace

std::optional<Upstream> parse_upstream(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    auto u = parse_host(text.substr(1, close - 1));
    if (!u || u->addr.is_v4()) return std::nullopt;
    auto rest = text.substr(close + 1);
    if (rest.empty()) return u;
    if (rest.front() != ':') return std::nullopt;
    auto port = parse_port(rest.substr(1));
    if (!port) return std::nullopt;
    u->port = *port;
    return u;
  }
  if (auto u = parse_host(text)) return u;
  // Only IPv4 may carry ":port" without brackets; an IPv6 address has colons of its own.
  auto colon = text.find(':');
  if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  auto u = parse_host(text.substr(0, colon));
  auto port = parse_port(text.substr(colon + 1));
  if (!u || !u->addr.is_v4() || !port) return std::nullopt;
  u->port = *port;
  return u;
}

std::vector<Upstream> parse_resolv_conf(std::string_view text) {
  std::vector<Upstream> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    auto word = [&line]() {
      auto b = line.find_first_not_of(" \t\r");
      if (b == std::string_view::npos) return std::string_view{};
      line = line.substr(b);
      auto e = line.find_first_of(" \t\r#;");
      auto w = line.substr(0, e);
      line = e == std::string_view::npos ? std::string_view{} : line.substr(e);
      return w;
    };
    if (word() != "nameserver") continue;
    if (auto u = parse_host(word())) push_unique(out, *u);
  }
  return out;
}

std::vector<Upstream> select_upstreams(const std::vector<Upstream>& container,
                                       const std::vector<Upstream>& network,
                                       const std::vector<Upstream>& host,
                                       const std::vector<IpAddr>& own_addresses) {
  for (const auto* list : {&container, &network, &host}) {
    std::vector<Upstream> out;
    for (const auto& u : *list) {
      bool own =
          std::find(own_addresses.begin(), own_addresses.end(), u.addr) != own_addresses.end();
      if (!own) push_unique(out, u);
      if (out.size() == kMaxUpstreams) break;
    }
    if (!out.empty()) return out;
  }
  return {};
}

int per_server_timeout_ms(size_t count) {
  return kForwardBudgetMs / static_cast<int>(std::clamp<size_t>(count, 1, kMaxUpstreams));
}

ResolvConf::ResolvConf(std::string path)
    : path_(std::move(path)), inotify_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
  if (!inotify_) throw_errno("inotify_init1");
  watch();
  reload();
}

void ResolvConf::watch() {
  // Watch the directory of the path and of whatever it resolves to: both an edit of the target
  // and a replaced symlink must be noticed. Old watches stay; they only cause extra re-reads.
  names_.clear();
  std::vector<std::string> paths = {path_};
  char real[PATH_MAX];
  if (realpath(path_.c_str(), real) && path_ != real) paths.emplace_back(real);
  for (const auto& p : paths) {
    auto slash = p.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
    names_.push_back(p.substr(slash == std::string::npos ? 0 : slash + 1));
    if (inotify_add_watch(inotify_.get(), dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM) <
        0) {
      spdlog::warn("cannot watch {} for changes to {}: {}", dir, path_, std::strerror(errno));
    }
  }
}

bool ResolvConf::on_readable() {
  alignas(inotify_event) char buf[4096];
  bool relevant = false;
  for (;;) {
    ssize_t n = read(inotify_.get(), buf, sizeof(buf));
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      std::string name = ev->len ? ev->name : "";
      relevant = relevant || ev->mask & IN_Q_OVERFLOW ||
                 std::find(names_.begin(), names_.end(), name) != names_.end();
      p += sizeof(inotify_event) + ev->len;
    }
  }
  if (relevant) {
    watch();
    reload();
  }
  return relevant;
}

void ResolvConf::reload() {
  try {
    servers_ = parse_resolv_conf(read_file(path_).value_or(""));
  } catch (const Error& e) {
    spdlog::warn("cannot read {}: {}", path_, e.what());
    servers_.clear();
  }
  spdlog::info("host upstreams from {}: {}", path_, servers_.size());
}

}  // namespace cni::dns
