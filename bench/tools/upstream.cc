// tether-bench-upstream: the fake upstream resolver of the DNS benchmark.
//
//   tether-bench-upstream <IPv4 address> <port>
//
// Answers every UDP query at once: A queries with one A record (192.0.2.1, TTL 0, so no server
// under test may cache it and every query of the forwarded runs is really forwarded), anything
// else with an empty NOERROR. Batches of up to 64 datagrams per recvmmsg/sendmmsg, one thread,
// no parsing beyond the question: it must be much faster than any server it stands behind
// (bench.py measures its own rate and CPU time per query to show that it is not the
// bottleneck). Prints "ready" once bound; SIGTERM ends it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int kBatch = 64;
constexpr size_t kMaxMsg = 512;

// The reply to `q` (length `n`) in `out`; 0 when `q` is not a query worth answering.
size_t reply(const unsigned char* q, size_t n, unsigned char* out) {
  if (n < 12 + 5 || (q[2] & 0x80) != 0) return 0;  // too short, or a response
  size_t p = 12;
  while (p < n && q[p] != 0) {
    if ((q[p] & 0xC0) != 0) return 0;  // no compression in a question
    p += static_cast<size_t>(q[p]) + 1;
  }
  if (p + 5 > n) return 0;
  const size_t qend = p + 5;  // root label, QTYPE, QCLASS
  const bool is_a = q[p + 1] == 0 && q[p + 2] == 1;
  std::memcpy(out, q, qend);
  out[2] = static_cast<unsigned char>(0x80 | (q[2] & 0x01));  // QR, RD copied
  out[3] = 0x80;                                              // RA, NOERROR
  out[4] = 0, out[5] = 1;                                     // QDCOUNT
  out[6] = 0, out[7] = is_a ? 1 : 0;                          // ANCOUNT
  std::memset(out + 8, 0, 4);                                 // NSCOUNT, ARCOUNT
  if (!is_a) return qend;
  static const unsigned char kAnswer[] = {0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1};
  std::memcpy(out + qend, kAnswer, sizeof kAnswer);
  return qend + sizeof kAnswer;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: tether-bench-upstream <IPv4 address> <port>\n");
    return 2;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (fd < 0 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("tether-bench-upstream: bind");
    return 1;
  }
  const int buf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  std::printf("ready\n");
  std::fflush(stdout);

  static std::array<std::array<unsigned char, kMaxMsg>, kBatch> in, out;
  std::array<sockaddr_in, kBatch> peers{};
  std::array<iovec, kBatch> in_iov{}, out_iov{};
  std::array<mmsghdr, kBatch> in_msg{}, out_msg{};
  for (int i = 0; i < kBatch; ++i) {
    in_iov[i] = {in[i].data(), kMaxMsg};
    in_msg[i].msg_hdr.msg_iov = &in_iov[i];
    in_msg[i].msg_hdr.msg_iovlen = 1;
    in_msg[i].msg_hdr.msg_name = &peers[i];
  }
  for (;;) {
    for (auto& m : in_msg) m.msg_hdr.msg_namelen = sizeof(sockaddr_in);
    const int got = recvmmsg(fd, in_msg.data(), kBatch, MSG_WAITFORONE, nullptr);
    if (got < 0) continue;  // EINTR
    int n = 0;
    for (int i = 0; i < got; ++i) {
      const size_t len = reply(in[i].data(), in_msg[i].msg_len, out[n].data());
      if (len == 0) continue;
      out_iov[n] = {out[n].data(), len};
      out_msg[n].msg_hdr = {};
      out_msg[n].msg_hdr.msg_iov = &out_iov[n];
      out_msg[n].msg_hdr.msg_iovlen = 1;
      out_msg[n].msg_hdr.msg_name = &peers[i];
      out_msg[n].msg_hdr.msg_namelen = in_msg[i].msg_hdr.msg_namelen;
      ++n;
    }
    for (int sent = 0; sent < n;) {
      const int s = sendmmsg(fd, out_msg.data() + sent, static_cast<unsigned>(n - sent), 0);
      if (s <= 0) break;
      sent += s;
    }
  }
}
