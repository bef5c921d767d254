#pragma once
// The netfilter netlink socket and the one loop that reads the kernel's answers, for everything
// tether says to netfilter: nf_tables (common/nft*) and ctnetlink (portmap's conntrack flush).
//
// The loop's contract (nftables' src/mnl.c has the same rules, spread over nft_mnl_recv and
// mnl_batch_talk):
// - Callbacks are C++ and run from this loop, never from inside libmnl's C frames, so an
//   exception never unwinds through C. A callback that throws gets no further messages; the rest
//   of the answer is still read, so that the socket is ready for the next request, and then the
//   exception is rethrown.
// - A signal interrupting recv is retried. A dump the kernel marks interrupted (NLM_F_DUMP_INTR:
//   the ruleset changed while it was being dumped) is read to its end and reported as EINTR, so
//   that the caller can read it again.
// - Only messages for this socket's port id and the request's sequence number count; leftovers
//   of an earlier answer are skipped. ENOBUFS (the kernel dropped replies because the receive
//   buffer was full) is reported once what is still queued has been read.
//
// One socket per process is the cheapest: on every release of a netfilter socket the kernel
// waits, holding nf_tables' commit mutex, for the RCU grace period of any commit that deleted
// something (nft_rcv_nl_event -> nf_tables_trans_destroy_flush_work; docs/nftables.md).
#include <libmnl/libmnl.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/c_ptr.h"

namespace cni::mnl {

// A non-owning reference to a callable `void(const nlmsghdr*)`: lets the loop live in mnl.cc
// without std::function's allocation. The callable must outlive the call it is passed to.
class OnMessage {
 public:
  OnMessage() = default;
  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, OnMessage>)
      OnMessage(F&& f)  // NOLINT(google-explicit-constructor): lambdas are passed directly
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, const nlmsghdr* m) {
          (*static_cast<std::remove_reference_t<F>*>(o))(m);
        }) {}
  void operator()(const nlmsghdr* m) const { call_(obj_, m); }
  explicit operator bool() const { return call_ != nullptr; }

 private:
  void* obj_ = nullptr;
  void (*call_)(void*, const nlmsghdr*) = nullptr;
};

class Socket {
 public:
  // A NETLINK_NETFILTER socket in the calling thread's netns: close-on-exec, bound, with
  // extended ACKs (the kernel's reason for an error) and capped ACKs (no echo of our message).
  // Throws Error.
  static Socket netfilter();

  uint32_t portid() const { return portid_; }
  uint32_t next_seq() { return ++seq_; }
  int fd() const;  // -1 once released

  // Sends `request` and reads its whole answer, up to NLMSG_DONE or the NLMSG_ERROR (ACK)
  // answering it; every other message of the answer goes to on_message. Returns 0 or -errno:
  // the kernel's error, -EINTR for an interrupted dump, -ENOBUFS when replies were lost.
  // Throws Error when the socket fails; rethrows what on_message threw.
  int talk(const nlmsghdr* request, OnMessage on_message = {});

  // Sends one datagram gathered from `iov` (an nf_tables batch). Throws Error.
  void send(const std::vector<iovec>& iov);
  // Reads what is queued now, without waiting: every message for this port id whose sequence
  // number is in [first_seq, last_seq], NLMSG_ERROR included, goes to on_message. Returns false
  // when replies were lost (ENOBUFS). Rethrows what on_message threw, after reading the rest.
  bool drain(uint32_t first_seq, uint32_t last_seq, OnMessage on_message);

  // Makes room in the kernel's buffers for a batch of `send_bytes` and its ACKs (SO_*BUFFORCE
  // when privileged, else as far as wmem_max/rmem_max allow).
  void reserve(size_t send_bytes, size_t recv_bytes);

  // Closes the socket without waiting for the kernel: the release, and its wait for the grace
  // period of any commit that deleted something (above), happen in a detached grandchild that
  // holds nothing else (no stdio, no lock) and exits once it has released the socket. For a
  // process whose last act is a deleting commit (portmap's DEL and GC): its caller gets its
  // answer and its exit a grace period sooner. The commit itself is complete and visible before
  // this is called; what the kernel still does is free what it deleted. Where the child cannot
  // be made, the socket is closed here, waiting as before. The socket is empty afterwards.
  //
  // The kernel waits for that grace period holding the netns's nftables commit mutex (the
  // release flushes the deferred destroy under it), so every other commit in the meantime
  // waits too: bridge's, in the DEL that follows portmap's (docs/benchmarks.md had 4.9 ms of
  // "nft commit: waiting for the commit mutex" in bridge). The grandchild first waits for a
  // grace period of its own, holding nothing (membarrier(MEMBARRIER_CMD_GLOBAL) is
  // synchronize_rcu()): by then the commit's destroy work has run, and the release holds the
  // mutex for microseconds.
  void release_detached();

 private:
  struct Answer;
  Socket() = default;
  void read(Answer& answer, bool to_end);

  CPtr<mnl_socket, mnl_socket_close> sock_;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  std::vector<char> buf_;  // one receive buffer, larger than any skb the kernel builds
};

}  // namespace cni::mnl
