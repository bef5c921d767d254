#include "common/rtnl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netconf.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

#include "common/crash_point.h"
#include "common/error.h"

namespace cni::nl {
namespace {

// Our own sequence numbers, far from libnl's (which starts at the time of day and counts up by
// one per request), so that a stray answer could never be taken for the other's.
uint32_t next_seq() {
  static uint32_t seq = 0x7e7e0000u;
  return ++seq;
}

// Sends the request in `buf` on the socket's descriptor and feeds every answer to `on_msg`
// until the ACK (or NLMSG_DONE of a dump). Throws on a netlink error.
void transact(Socket& sock, nlmsghdr* req, const std::function<void(const nlmsghdr*)>& on_msg,
              const std::string& what) {
  const int fd = nl_socket_get_fd(sock.get());
  const bool dump = (req->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  req->nlmsg_seq = next_seq();
  if (!dump) req->nlmsg_flags |= NLM_F_ACK;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, req, req->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) <
      0) {
    throw_errno(what + ": send");
  }
  std::vector<char> buf(32768);  // as MNL_SOCKET_DUMP_SIZE: no dump part is larger
  for (;;) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(what + ": receive");
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(h, len);
         h = mnl_nlmsg_next(h, &len)) {
      if (h->nlmsg_seq != req->nlmsg_seq) continue;  // not ours (a late answer of libnl's)
      if (h->nlmsg_type == NLMSG_DONE) return;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
        if (e->error == 0 && !dump) return;  // the ACK
        if (e->error != 0) throw_errno(what, -e->error);
        continue;
      }
      on_msg(h);  // for a request that is not a dump, its ACK follows
    }
  }
}

// The attributes after a message's fixed header, or inside a nest (libmnl's iteration macros
// do not compile as C++).
template <class F>
void each_attr(const nlmsghdr* h, size_t header, F&& f) {
  auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(h, header));
  auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(h));
  for (; mnl_attr_ok(a, static_cast<int>(tail - reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a)) {
    f(a);
  }
}

template <class F>
void each_nested(const nlattr* nest, F&& f) {
  auto* a = static_cast<const nlattr*>(mnl_attr_get_payload(nest));
  auto* tail = reinterpret_cast<const char*>(nest) + mnl_attr_get_len(nest);
  for (; mnl_attr_ok(a, static_cast<int>(tail - reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a)) {
    f(a);
  }
}

class StrictDumps {
 public:
  explicit StrictDumps(Socket& sock) : fd_(nl_socket_get_fd(sock.get())) {
    int one = 1;
    on_ = ::setsockopt(fd_, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one) == 0;
  }
  // libnl's own dumps send headers shorter than strict checking accepts: off again after ours.
  ~StrictDumps() {
    int zero = 0;
    if (on_) ::setsockopt(fd_, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &zero, sizeof zero);
  }
  StrictDumps(const StrictDumps&) = delete;
  StrictDumps& operator=(const StrictDumps&) = delete;

 private:
  int fd_;
  bool on_ = false;
};

// IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF of an RTM_NEWLINK, nullptr when absent.
const nlattr* find_inet_conf(const nlmsghdr* h) {
  const nlattr* found = nullptr;
  each_attr(h, sizeof(ifinfomsg), [&](const nlattr* attr) {
    if (mnl_attr_get_type(attr) != IFLA_AF_SPEC) return;
    each_nested(attr, [&](const nlattr* af) {
      if (mnl_attr_get_type(af) != AF_INET) return;
      each_nested(af, [&](const nlattr* c) {
        if (mnl_attr_get_type(c) == IFLA_INET_CONF) found = c;
      });
    });
  });
  return found;
}

}  // namespace

std::vector<Address> dump_addresses(Socket& sock, int ifindex, int family) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* req = mnl_nlmsg_put_header(buf);
  req->nlmsg_type = RTM_GETADDR;
  req->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(req, sizeof(ifaddrmsg)));
  ifa->ifa_family = static_cast<uint8_t>(family);
  ifa->ifa_index = static_cast<uint32_t>(ifindex);
  std::vector<Address> out;
  StrictDumps strict(sock);
  transact(
      sock, req,
      [&](const nlmsghdr* h) {
        if (h->nlmsg_type != RTM_NEWADDR) return;
        auto* m = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(h));
        if ((ifindex != 0 && static_cast<int>(m->ifa_index) != ifindex) ||
            (family != AF_UNSPEC && m->ifa_family != family)) {
          return;  // a kernel without strict dumps sends everything
        }
        Address a;
        a.ifindex = static_cast<int>(m->ifa_index);
        a.family = m->ifa_family;
        a.prefix_len = m->ifa_prefixlen;
        a.scope = m->ifa_scope;
        a.flags = m->ifa_flags;
        const void* local = nullptr;
        const void* address = nullptr;
        each_attr(h, sizeof(ifaddrmsg), [&](const nlattr* attr) {
          switch (mnl_attr_get_type(attr)) {
            case IFA_LOCAL:
              local = mnl_attr_get_payload(attr);
              break;
            case IFA_ADDRESS:
              address = mnl_attr_get_payload(attr);
              break;
            case IFA_FLAGS:
              a.flags = mnl_attr_get_u32(attr);
              break;
            default:
              break;
          }
        });
        // IFA_LOCAL is the interface's own address where it differs (point-to-point links);
        // libnl's rtnl_addr_get_local reports the same.
        const void* bin = local != nullptr ? local : address;
        if (bin == nullptr || (a.family != AF_INET && a.family != AF_INET6)) return;
        a.ip = IpAddr::from_bytes(a.family == AF_INET ? IpAddr::Family::kV4 : IpAddr::Family::kV6,
                                  static_cast<const uint8_t*>(bin));
        out.push_back(a);
      },
      "cannot list addresses of ifindex " + std::to_string(ifindex));
  return out;
}

std::optional<bool> get_forwarding(Socket& sock, int family) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* req = mnl_nlmsg_put_header(buf);
  req->nlmsg_type = RTM_GETNETCONF;
  req->nlmsg_flags = NLM_F_REQUEST;
  auto* ncm = static_cast<netconfmsg*>(mnl_nlmsg_put_extra_header(req, sizeof(netconfmsg)));
  ncm->ncm_family = static_cast<uint8_t>(family);
  mnl_attr_put_u32(req, NETCONFA_IFINDEX, static_cast<uint32_t>(NETCONFA_IFINDEX_ALL));
  std::optional<bool> out;
  transact(
      sock, req,
      [&](const nlmsghdr* h) {
        if (h->nlmsg_type != RTM_NEWNETCONF) return;
        each_attr(h, sizeof(netconfmsg), [&](const nlattr* attr) {
          if (mnl_attr_get_type(attr) == NETCONFA_FORWARDING) {
            out = mnl_attr_get_u32(attr) != 0;
          }
        });
      },
      "cannot read the forwarding setting");
  return out;
}

std::optional<uint32_t> get_ipv4_devconf(Socket& sock, int ifindex, int knob) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* req = mnl_nlmsg_put_header(buf);
  req->nlmsg_type = RTM_GETLINK;
  req->nlmsg_flags = NLM_F_REQUEST;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(req, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  mnl_attr_put_u32(req, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  std::optional<uint32_t> out;
  transact(
      sock, req,
      [&](const nlmsghdr* h) {
        if (h->nlmsg_type != RTM_NEWLINK) return;
        const nlattr* conf = find_inet_conf(h);
        if (conf == nullptr) return;
        // An array of u32 indexed by IPV4_DEVCONF_* - 1.
        size_t n = mnl_attr_get_payload_len(conf) / sizeof(uint32_t);
        if (knob < 1 || static_cast<size_t>(knob) > n) return;
        uint32_t v;
        std::memcpy(
            &v,
            static_cast<const char*>(mnl_attr_get_payload(conf)) + (knob - 1) * sizeof(uint32_t),
            sizeof v);
        out = v;
      },
      "cannot read the IPv4 settings of ifindex " + std::to_string(ifindex));
  return out;
}

namespace {

// An RTM_SETLINK request for `ifindex` in `buf`, attributes to follow.
nlmsghdr* setlink_request(char* buf, int ifindex) {
  nlmsghdr* req = mnl_nlmsg_put_header(buf);
  req->nlmsg_type = RTM_SETLINK;
  req->nlmsg_flags = NLM_F_REQUEST;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(req, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  return req;
}

}  // namespace

void set_ipv4_devconf(Socket& sock, int ifindex, int knob, uint32_t value) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* req = setlink_request(buf, ifindex);
  nlattr* spec = mnl_attr_nest_start(req, IFLA_AF_SPEC);
  nlattr* inet = mnl_attr_nest_start(req, AF_INET);
  nlattr* conf = mnl_attr_nest_start(req, IFLA_INET_CONF);
  mnl_attr_put_u32(req, static_cast<uint16_t>(knob), value);
  mnl_attr_nest_end(req, conf);
  mnl_attr_nest_end(req, inet);
  mnl_attr_nest_end(req, spec);
  transact(
      sock, req, [](const nlmsghdr*) {},
      "cannot set IPv4 setting " + std::to_string(knob) + " of ifindex " + std::to_string(ifindex));
  crash_point("devconf-set");
}

void set_ipv6_addr_gen_mode(Socket& sock, int ifindex, uint8_t mode) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* req = setlink_request(buf, ifindex);
  nlattr* spec = mnl_attr_nest_start(req, IFLA_AF_SPEC);
  nlattr* inet6 = mnl_attr_nest_start(req, AF_INET6);
  mnl_attr_put_u8(req, IFLA_INET6_ADDR_GEN_MODE, mode);
  mnl_attr_nest_end(req, inet6);
  mnl_attr_nest_end(req, spec);
  transact(
      sock, req, [](const nlmsghdr*) {},
      "cannot set the IPv6 address generation mode of ifindex " + std::to_string(ifindex));
  crash_point("addr-gen-mode-set");
}

SysctlDir::SysctlDir(const std::string& key)
    : path_("/proc/sys/" + key), fd_(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
  if (!fd_ && errno != ENOENT) throw_errno("cannot open " + path_);
}

std::optional<std::string> SysctlDir::read(const std::string& rel) const {
  if (!fd_) return std::nullopt;
  Fd fd(::openat(fd_.get(), rel.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("cannot open sysctl " + path_ + "/" + rel);
  }
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0) throw_errno("cannot read sysctl " + path_ + "/" + rel);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

void SysctlDir::write(const std::string& rel, std::string_view value) const {
  const std::string path = path_ + "/" + rel;
  if (!fd_) throw_errno("cannot open sysctl " + path, ENOENT);
  Fd fd(::openat(fd_.get(), rel.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open sysctl " + path);
  ssize_t n = ::write(fd.get(), value.data(), value.size());
  if (n != static_cast<ssize_t>(value.size())) {
    throw_errno("cannot write " + std::string(value) + " to sysctl " + path, n < 0 ? errno : EIO);
  }
}

}  // namespace cni::nl
