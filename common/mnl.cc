#include "common/mnl.h"

#include <fcntl.h>
#include <linux/membarrier.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <exception>

#include "common/detached.h"
#include "common/error.h"

namespace cni::mnl {
namespace {

constexpr size_t kRecvSize = 64 * 1024;  // larger than any skb the kernel builds for us

// The error an NLMSG_ERROR carries (0: an ACK), as a positive errno.
int ack_error(const nlmsghdr* m) {
  if (m->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) return EBADMSG;
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
  return std::abs(err->error);  // some subsystems send it positive
}

// A dump ends with NLMSG_DONE, whose payload is the dump's own result (0 or -errno).
int done_error(const nlmsghdr* m) {
  if (mnl_nlmsg_get_payload_len(m) < sizeof(int)) return 0;
  return std::abs(*static_cast<const int*>(mnl_nlmsg_get_payload(m)));
}

}  // namespace

// What has been read of one answer (talk) or of the queued ACKs of a batch (drain).
struct Socket::Answer {
  uint32_t first_seq = 0;
  uint32_t last_seq = 0;
  OnMessage on_message;
  bool control = false;  // drain: NLMSG_ERROR goes to on_message as well
  bool ended = false;    // talk: NLMSG_DONE, or the NLMSG_ERROR answering the request, was read
  int error = 0;         // its errno
  bool interrupted = false;
  bool lost = false;
  std::exception_ptr thrown;

  void take(const nlmsghdr* m, uint32_t portid) {
    if (m->nlmsg_pid != 0 && m->nlmsg_pid != portid) return;
    if (m->nlmsg_seq < first_seq || m->nlmsg_seq > last_seq) return;  // an earlier answer's
    if ((m->nlmsg_flags & NLM_F_DUMP_INTR) != 0) interrupted = true;
    if (m->nlmsg_type == NLMSG_NOOP || m->nlmsg_type == NLMSG_OVERRUN) return;
    if (m->nlmsg_type == NLMSG_DONE || (m->nlmsg_type == NLMSG_ERROR && !control)) {
      ended = true;
      error = m->nlmsg_type == NLMSG_DONE ? done_error(m) : ack_error(m);
      return;
    }
    if (thrown || interrupted || !on_message) return;
    try {
      on_message(m);
    } catch (...) {
      thrown = std::current_exception();
    }
  }
};

Socket Socket::netfilter() {
  Socket s;
  s.sock_.reset(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
  if (!s.sock_) throw_errno("cannot open a netfilter netlink socket");
  if (mnl_socket_bind(s.sock_.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    throw_errno("cannot bind the netfilter netlink socket");
  }
  s.portid_ = mnl_socket_get_portid(s.sock_.get());
  int one = 1;
  mnl_socket_setsockopt(s.sock_.get(), NETLINK_EXT_ACK, &one, sizeof one);
  mnl_socket_setsockopt(s.sock_.get(), NETLINK_CAP_ACK, &one, sizeof one);
  s.seq_ = static_cast<uint32_t>(time(nullptr));
  s.buf_.resize(kRecvSize);
  return s;
}

int Socket::fd() const { return sock_ ? mnl_socket_get_fd(sock_.get()) : -1; }

namespace {

struct Release {
  int fd;
  int go;
};

// The grandchild's part of release_detached: async-signal-safe calls only.
void release_when_told(void* arg) {
  const auto* r = static_cast<const Release*>(arg);
  char c;
  // EOF once the parent has closed its copy of the socket and then the pipe: this close is
  // the socket's last, the one that waits.
  while (::read(r->go, &c, 1) < 0 && errno == EINTR) {
  }
  // A grace period outside the commit mutex first (mnl.h); where membarrier is refused
  // (nohz_full, no CONFIG_MEMBARRIER) the close waits as it would have.
  ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
  ::close(r->fd);
}

}  // namespace

void Socket::release_detached() {
  if (!sock_) return;
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) {
    sock_.reset();
    return;
  }
  Release r{mnl_socket_get_fd(sock_.get()), go[0]};
  const int keep[] = {r.fd, r.go};
  run_detached(keep, release_when_told, &r);
  ::close(go[0]);
  sock_.reset();  // the child still holds it: not the last reference, no wait
  ::close(go[1]);
}

int Socket::talk(const nlmsghdr* request, OnMessage on_message) {
  if ((request->nlmsg_flags & (NLM_F_ACK | NLM_F_DUMP)) == 0) {
    // Without either the answer has no end to wait for.
    throw Error(kErrInternal, "netlink request without NLM_F_ACK or NLM_F_DUMP");
  }
  while (mnl_socket_sendto(sock_.get(), request, request->nlmsg_len) < 0) {
    if (errno != EINTR) throw_errno("cannot send a netfilter netlink request");
  }
  Answer a;
  a.first_seq = a.last_seq = request->nlmsg_seq;
  a.on_message = on_message;
  read(a, /*to_end=*/true);
  if (a.thrown) std::rethrow_exception(a.thrown);
  if (a.error != 0) return -a.error;
  if (a.lost || !a.ended) return -ENOBUFS;
  return a.interrupted ? -EINTR : 0;
}

void Socket::send(const std::vector<iovec>& iov) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof kernel;
  msg.msg_iov = const_cast<iovec*>(iov.data());
  msg.msg_iovlen = iov.size();
  while (sendmsg(fd(), &msg, 0) < 0) {
    if (errno != EINTR) throw_errno("cannot send the nftables batch");
  }
}

bool Socket::drain(uint32_t first_seq, uint32_t last_seq, OnMessage on_message) {
  Answer a;
  a.first_seq = first_seq;
  a.last_seq = last_seq;
  a.on_message = on_message;
  a.control = true;
  read(a, /*to_end=*/false);
  if (a.thrown) std::rethrow_exception(a.thrown);
  return !a.lost;
}

// The one receive loop. to_end: until the answer has ended (blocking; once replies were lost,
// only as long as something is queued, so that a lost end cannot block forever); otherwise until
// nothing is queued.
void Socket::read(Answer& a, bool to_end) {
  while (!(to_end && a.ended)) {
    const bool wait = to_end && !a.lost;
    ssize_t n = recv(fd(), buf_.data(), buf_.size(), wait ? 0 : MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        a.lost = true;
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      throw_errno("cannot read from the netfilter netlink socket");
    }
    int left = static_cast<int>(n);
    for (auto* m = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(m, left);
         m = mnl_nlmsg_next(m, &left)) {
      a.take(m, portid_);
    }
  }
}

namespace {

void grow_buffer(int fd, int opt_force, int opt, size_t want) {
  int current = 0;
  socklen_t len = sizeof current;
  if (getsockopt(fd, SOL_SOCKET, opt, &current, &len) == 0 &&
      static_cast<size_t>(current) >= want) {
    return;
  }
  int v = static_cast<int>(want);
  if (setsockopt(fd, SOL_SOCKET, opt_force, &v, sizeof v) != 0) {
    setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);  // unprivileged: capped by wmem/rmem_max
  }
}

}  // namespace

void Socket::reserve(size_t send_bytes, size_t recv_bytes) {
  grow_buffer(fd(), SO_SNDBUFFORCE, SO_SNDBUF, send_bytes);
  grow_buffer(fd(), SO_RCVBUFFORCE, SO_RCVBUF, recv_bytes);
}

}  // namespace cni::mnl
