// nl::delete_link_detached (netlink.h): a link delete whose caller waits for the kernel's
// unregistering of the link, not for the kernel's deferred work after it.
//
// In RTM_DELLINK the kernel unlists the device, notifies RTNLGRP_LINK (RTM_DELLINK) and only
// then, in rtnl_unlock's netdev_run_todo, waits for every RCU callback queued so far
// (rcu_barrier) before it frees the device and acknowledges the request: 13-20 ms of a veth
// delete on a 2-core VM, against about 1 ms to the notification (bench/findings.md). The request
// goes out from a detached grandchild; this process listens for the notification on a socket
// of its own, subscribed before the request is sent, and for the grandchild's answer on a pipe:
// an error (a link already gone) comes back at once, a success after the wait, by when this
// process has long gone on.
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/crash_point.h"
#include "common/detached.h"
#include "common/error.h"
#include "common/files.h"
#include "common/netlink.h"

namespace cni::nl {

namespace {

constexpr int kAnswerTimeoutMs = 30000;  // the unregistering takes milliseconds

struct DelLink {
  nlmsghdr hdr;
  ifinfomsg ifi;
};

struct Request {
  int sock;    // NETLINK_ROUTE, in the link's netns
  int answer;  // the pipe's write end: the request's errno, 0 on success
  DelLink msg;
};

// The grandchild's part: async-signal-safe calls only.
void send_delete(void* arg) {
  const auto* r = static_cast<const Request*>(arg);
  // The answer may find the parent gone: EPIPE then, not death by SIGPIPE before the kept
  // descriptors are closed in order.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, nullptr);
  int err = 0;
  if (::send(r->sock, &r->msg, sizeof r->msg, 0) < 0) {
    err = errno;
  } else {
    alignas(nlmsghdr) char buf[1024];
    ssize_t n;
    while ((n = ::recv(r->sock, buf, sizeof buf, 0)) < 0 && errno == EINTR) {
    }
    const auto* h = reinterpret_cast<const nlmsghdr*>(buf);
    if (n < 0) {
      err = errno;
    } else if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))) ||
               h->nlmsg_type != NLMSG_ERROR) {
      err = EBADMSG;
    } else {
      const int e = static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
      err = e < 0 ? -e : e;
    }
  }
  if (::write(r->answer, &err, sizeof err) < 0) {
    // EPIPE: the parent has the notification and has gone on; nobody waits for the answer.
  }
}

Fd route_socket(unsigned groups) {
  Fd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) throw_errno("cannot open a rtnetlink socket", errno, kErrInternal);
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = groups;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    throw_errno("cannot bind a rtnetlink socket", errno, kErrInternal);
  }
  return fd;
}

// Whether `buf` (one recv of the subscribed socket) holds the unregistering of `ifindex`.
bool unregistered(const char* buf, ssize_t n, int ifindex) {
  auto len = static_cast<unsigned>(n);
  for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
    if (h->nlmsg_type != RTM_DELLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) continue;
    const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
    // AF_UNSPEC: the device's own; a bridge port's removal is also announced as AF_BRIDGE.
    if (ifi->ifi_family == AF_UNSPEC && ifi->ifi_index == ifindex) return true;
  }
  return false;
}

// What the grandchild answered: its errno, or -1 when it ended without an answer.
int read_answer(int fd) {
  int err = 0;
  ssize_t n;
  while ((n = ::read(fd, &err, sizeof err)) < 0 && errno == EINTR) {
  }
  return n == static_cast<ssize_t>(sizeof err) ? err : -1;
}

}  // namespace

bool delete_link_detached(int ifindex, const std::string& name, std::span<const int> keep) {
  const std::string what = "cannot delete link " + name;
  Fd watch = route_socket(RTMGRP_LINK);
  Fd sock = route_socket(0);
  int answer[2];
  if (::pipe2(answer, O_CLOEXEC) != 0) throw_errno(what, errno, kErrInternal);
  Fd answer_read(answer[0]);
  Fd answer_write(answer[1]);

  Request r{sock.get(), answer_write.get(), {}};
  r.msg.hdr.nlmsg_len = sizeof r.msg;
  r.msg.hdr.nlmsg_type = RTM_DELLINK;
  r.msg.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  r.msg.hdr.nlmsg_seq = 1;
  r.msg.ifi.ifi_family = AF_UNSPEC;
  r.msg.ifi.ifi_index = ifindex;

  std::vector<int> fds{r.sock, r.answer};
  fds.insert(fds.end(), keep.begin(), keep.end());
  const bool made = run_detached(fds, send_delete, &r);
  sock = Fd();
  answer_write = Fd();  // EOF on answer_read once the grandchild is gone, answered or not

  bool gone = false;
  int err = -1;
  if (made) {
    pollfd p[2] = {{watch.get(), POLLIN, 0}, {answer_read.get(), POLLIN, 0}};
    alignas(nlmsghdr) char buf[8192];
    while (!gone && err < 0) {
      const int k = ::poll(p, 2, kAnswerTimeoutMs);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) throw Error(kErrInternal, what, "no answer from the kernel in 30 s");
      if (p[0].revents != 0) {
        const ssize_t got = ::recv(watch.get(), buf, sizeof buf, MSG_DONTWAIT);
        // ENOBUFS: notifications were lost, perhaps this one; the answer still comes.
        if (got > 0) gone = unregistered(buf, got, ifindex);
      }
      if (!gone && p[1].revents != 0) {
        err = read_answer(answer_read.get());
        if (err < 0) break;  // no grandchild left to answer
      }
    }
  }
  if (!gone && err < 0) {
    // No grandchild, or one that ended without answering: the delete is made here.
    Socket here = Socket::open();
    return get_link(here, ifindex) ? delete_link(here, name) : false;
  }
  if (!gone && err == ENODEV) return false;
  if (!gone && err != 0) throw Error(kErrInternal, what, std::strerror(err));
  crash_point("link-deleted");
  return true;
}

}  // namespace cni::nl
