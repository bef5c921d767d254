// tether-bench-veth: the kernel's floor for what a CNI call must do, in one netlink call.
//
//   tether-bench-veth add <bridge> <host-name> <netns path>
//     one RTM_NEWLINK: a veth pair, the host end <host-name> up and enslaved to <bridge>, the
//     other end "eth0" in the netns (the bridge is created first if missing, not timed);
//   tether-bench-veth del <host-name>
//     one RTM_DELLINK of the host end, which takes the container end with it: what every
//     bridge DEL must at least do;
//   tether-bench-veth del-bridge <bridge>
//     cleanup, not timed.
//
// add and del print {"ms": <milliseconds of the netlink call and its ACK>}: the floor without
// any process start-up; del also "unregistered_ms", when the kernel's RTM_DELLINK notification
// of the pair came (the pair unregistered: gone from every listing, names free), before the
// call's deferred work (netdev_run_todo's rcu_barrier) and its ACK. bench/bench.py also times the
// whole exec of this tool, which is the floor of a one-process DEL. libnl directly rather than
// tether-common, so that the floor does not move when tether's own netlink code does.
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

namespace {

[[noreturn]] void die(const std::string& what, int err) {
  std::fprintf(stderr, "tether-bench-veth: %s: %s\n", what.c_str(), nl_geterror(err));
  std::exit(1);
}

struct Sock {
  nl_sock* s = nl_socket_alloc();
  Sock() {
    if (s == nullptr) die("nl_socket_alloc", -NLE_NOMEM);
    if (int err = nl_connect(s, NETLINK_ROUTE); err < 0) die("nl_connect", err);
  }
  ~Sock() { nl_socket_free(s); }
};

struct Link {
  rtnl_link* l;
  explicit Link(rtnl_link* link) : l(link) {
    if (l == nullptr) die("rtnl_link_alloc", -NLE_NOMEM);
  }
  ~Link() { rtnl_link_put(l); }
};

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

void ensure_bridge(Sock& sock, const std::string& name) {
  if (if_nametoindex(name.c_str()) != 0) return;
  Link br(rtnl_link_alloc());
  rtnl_link_set_name(br.l, name.c_str());
  if (int err = rtnl_link_set_type(br.l, "bridge"); err < 0) die("bridge type", err);
  rtnl_link_set_flags(br.l, IFF_UP);
  int err = rtnl_link_add(sock.s, br.l, NLM_F_CREATE);
  if (err < 0 && err != -NLE_EXIST) die("creating bridge " + name, err);
}

int add(const std::string& bridge, const std::string& host, const std::string& netns) {
  Sock sock;
  ensure_bridge(sock, bridge);
  const unsigned master = if_nametoindex(bridge.c_str());
  if (master == 0) die("bridge " + bridge + " not found", -NLE_OBJ_NOTFOUND);
  const int nsfd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    std::fprintf(stderr, "tether-bench-veth: %s: %s\n", netns.c_str(), std::strerror(errno));
    return 1;
  }
  Link veth(rtnl_link_veth_alloc());
  rtnl_link_set_name(veth.l, host.c_str());
  rtnl_link_set_master(veth.l, static_cast<int>(master));
  rtnl_link_set_flags(veth.l, IFF_UP);
  rtnl_link* peer = rtnl_link_veth_get_peer(veth.l);
  rtnl_link_set_name(peer, "eth0");
  rtnl_link_set_ns_fd(peer, nsfd);
  rtnl_link_put(peer);
  const auto t = std::chrono::steady_clock::now();
  int err = rtnl_link_add(sock.s, veth.l, NLM_F_CREATE | NLM_F_EXCL);
  const double ms = ms_since(t);
  ::close(nsfd);
  if (err < 0) die("creating veth " + host, err);
  std::printf("{\"ms\": %.3f}\n", ms);
  return 0;
}

// A thread that waits for the RTM_DELLINK notification of `ifindex` on a socket subscribed
// before the delete is sent, and notes when it came.
struct Unregistered {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int ifindex;
  std::chrono::steady_clock::time_point at{};
  std::thread thread;

  explicit Unregistered(int index) : ifindex(index) {
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    local.nl_groups = RTMGRP_LINK;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      die("subscribing to link notifications", -NLE_FAILURE);
    }
    thread = std::thread([this] { wait(); });
  }
  std::atomic<bool> deleted{false};  // the call returned: what is queued is all there is

  void wait() {
    alignas(nlmsghdr) char buf[8192];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) == 0) {
        if (deleted) return;  // lost (ENOBUFS): no figure
        continue;
      }
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == ENOBUFS || errno == EAGAIN)) continue;
      if (n <= 0) return;
      auto len = static_cast<unsigned>(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
        if (h->nlmsg_type == RTM_DELLINK && ifi->ifi_family == AF_UNSPEC &&
            ifi->ifi_index == ifindex) {
          at = std::chrono::steady_clock::now();
          return;
        }
      }
    }
  }
  ~Unregistered() {
    deleted = true;
    if (thread.joinable()) thread.join();
    ::close(fd);
  }
};

int del(const std::string& name, bool timed) {
  Sock sock;
  Link link(rtnl_link_alloc());
  rtnl_link_set_name(link.l, name.c_str());
  const int ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  std::optional<Unregistered> unreg;
  if (timed && ifindex > 0) unreg.emplace(ifindex);
  const auto t = std::chrono::steady_clock::now();
  int err = rtnl_link_delete(sock.s, link.l);
  const double ms = ms_since(t);
  if (err < 0) die("deleting " + name, err);
  if (!unreg) {
    std::printf("{\"ms\": %.3f}\n", ms);
    return 0;
  }
  unreg->deleted = true;
  unreg->thread.join();  // the notification came before the ACK, or was lost
  if (unreg->at == std::chrono::steady_clock::time_point{}) {
    std::printf("{\"ms\": %.3f}\n", ms);
  } else {
    std::printf("{\"ms\": %.3f, \"unregistered_ms\": %.3f}\n", ms,
                std::chrono::duration<double, std::milli>(unreg->at - t).count());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "add" && argc == 5) return add(argv[2], argv[3], argv[4]);
  if ((cmd == "del" || cmd == "del-bridge") && argc == 3) return del(argv[2], cmd == "del");
  std::fprintf(stderr,
               "usage: tether-bench-veth add <bridge> <host-name> <netns> | del <host-name> | "
               "del-bridge <bridge>\n");
  return 2;
}
