#include "plugins/dns-sidecar/server.h"

#include <arpa/inet.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "common/error.h"
#include "plugins/dns-sidecar/control.h"
#include "plugins/dns-sidecar/ldns_ptr.h"

namespace cni::dns {

namespace {

constexpr int kBatch = 32;             // datagrams per recvmmsg/sendmmsg
constexpr size_t kMaxDatagram = 4096;  // larger queries are dropped (MSG_TRUNC)
constexpr size_t kMaxInflight = 1024;  // forwarded queries at once; beyond: REFUSED (Docker)
constexpr size_t kMaxTcpConns = 1024;
constexpr size_t kMaxControlLine = 1 << 20;
constexpr auto kTcpIdle = std::chrono::seconds(10);

IpAddr addr_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    return IpAddr::from_bytes(IpAddr::Family::kV4,
                              reinterpret_cast<const uint8_t*>(&sin->sin_addr));
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  return IpAddr::from_bytes(IpAddr::Family::kV6,
                            reinterpret_cast<const uint8_t*>(&sin6->sin6_addr));
}

std::string key_str(const ListenKey& k) {
  std::string host = k.addr.str();
  if (!k.addr.is_v4()) host = '[' + host + ']';
  return host + ":" + std::to_string(k.port);
}

bool would_block() { return errno == EAGAIN || errno == EWOULDBLOCK; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// The objects the loop dispatches to.

class FnWatch : public Watch {
 public:
  explicit FnWatch(std::function<void(uint32_t)> fn) : fn_(std::move(fn)) {}
  void on_event(uint32_t events) override { fn_(events); }

 private:
  std::function<void(uint32_t)> fn_;
};

struct Server::Listener {
  ListenKey key;
  Fd udp;
  Fd tcp;
  std::unique_ptr<Watch> udp_watch;
  std::unique_ptr<Watch> tcp_watch;
};

// One client TCP connection: length-prefixed messages in, any number per connection.
class TcpConn : public Watch {
 public:
  TcpConn(Server& s, uint64_t id, Fd fd, IpAddr peer, ListenKey key)
      : s_(s), id_(id), fd_(std::move(fd)), peer_(peer), key_(key), last_(Server::Clock::now()) {}

  void on_event(uint32_t events) override {
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_some();
    if (!retired && (events & EPOLLOUT)) flush();
  }

  void send_message(const std::vector<uint8_t>& msg) {
    out_.push_back(static_cast<uint8_t>(msg.size() >> 8));
    out_.push_back(static_cast<uint8_t>(msg.size() & 0xff));
    out_.insert(out_.end(), msg.begin(), msg.end());
    flush();
  }

  int fd() const { return fd_.get(); }
  bool idle(Server::Clock::time_point now) const {
    return pending_ == 0 && out_.empty() && now - last_ > kTcpIdle;
  }
  int pending_ = 0;  // forwarded queries whose answers go here

 private:
  void read_some() {
    uint8_t buf[8192];
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        in_.insert(in_.end(), buf, buf + n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && would_block()) break;
      close();  // EOF or error
      return;
    }
    last_ = Server::Clock::now();
    size_t off = 0;
    while (in_.size() - off >= 2) {
      size_t len = (static_cast<size_t>(in_[off]) << 8) | in_[off + 1];
      if (in_.size() - off - 2 < len) break;
      const uint8_t* msg = in_.data() + off + 2;
      off += 2 + len;
      Decision d = answer_query(s_.index_, peer_, msg, len, Transport::kTcp, s_.resolv_->servers(),
                                s_.rng_, &s_.cache_);
      if (d.kind == Decision::Kind::kDrop) {
        close();  // a malformed message: the stream cannot be trusted any further
        return;
      }
      s_.handle_decision(std::move(d), msg, len, Transport::kTcp, key_, {}, 0, id_, nullptr);
      if (retired) return;
    }
    in_.erase(in_.begin(), in_.begin() + static_cast<ptrdiff_t>(off));
  }

  void flush() {
    while (!out_.empty()) {
      ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && would_block()) break;
      if (n < 0) {
        close();
        return;
      }
      out_.erase(out_.begin(), out_.begin() + n);
    }
    bool want = !out_.empty();
    if (want != want_out_) {
      want_out_ = want;
      s_.mod_watch(fd_.get(), want ? EPOLLIN | EPOLLOUT : uint32_t{EPOLLIN}, this);
    }
  }

  void close() {
    auto it = s_.conns_.find(id_);
    if (it != s_.conns_.end()) {
      std::unique_ptr<Watch> self = std::move(it->second);
      s_.conns_.erase(it);
      s_.retire(std::move(self));
    }
  }

  Server& s_;
  uint64_t id_;
  Fd fd_;
  IpAddr peer_;
  ListenKey key_;
  Server::Clock::time_point last_;
  std::vector<uint8_t> in_;
  std::vector<uint8_t> out_;
  bool want_out_ = false;
};

// One forwarded query: tries its servers in order with the client's transport; a server that
// times out, fails, or answers SERVFAIL/REFUSED passes the query to the next.
class Forward : public Watch {
 public:
  Forward(Server& s, uint64_t id, std::vector<uint8_t> query, std::vector<Upstream> ups,
          Transport t)
      : s_(s), id_(id), query_(std::move(query)), ups_(std::move(ups)), t_(t) {}

  // Starts the next server; false when none is left.
  bool try_next() {
    while (next_ < ups_.size()) {
      const Upstream& u = ups_[next_++];
      s_.retire_token(this);
      sock_ = Fd();
      sockaddr_storage ss{};
      socklen_t len = u.to_sockaddr(&ss);
      int type = t_ == Transport::kUdp ? SOCK_DGRAM : SOCK_STREAM;
      Fd fd(::socket(u.addr.af(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd) continue;
      int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len);
      uint32_t events = EPOLLIN;
      if (t_ == Transport::kUdp) {
        if (rc != 0 || ::send(fd.get(), query_.data(), query_.size(), 0) < 0) {
          spdlog::debug("forward to {} failed: {}", u.str(), std::strerror(errno));
          continue;
        }
      } else {
        if (rc != 0 && errno != EINPROGRESS) continue;
        out_.clear();
        out_.push_back(static_cast<uint8_t>(query_.size() >> 8));
        out_.push_back(static_cast<uint8_t>(query_.size() & 0xff));
        out_.insert(out_.end(), query_.begin(), query_.end());
        in_.clear();
        events = EPOLLOUT;
      }
      sock_ = std::move(fd);
      s_.add_watch(sock_.get(), events, this);
      deadline_ =
          Server::Clock::now() + std::chrono::milliseconds(per_server_timeout_ms(ups_.size()));
      s_.forward_deadlines_.emplace(deadline_, id_);
      return true;
    }
    return false;
  }

  void on_event(uint32_t events) override {
    if (t_ == Transport::kUdp) {
      uint8_t buf[65535];
      ssize_t n = ::recv(sock_.get(), buf, sizeof(buf), 0);
      if (n < 0 && would_block()) return;
      if (n < 0) return next_or_fail();  // ICMP unreachable and friends
      if (static_cast<size_t>(n) < LDNS_HEADER_SIZE || LDNS_ID_WIRE(buf) != qid()) return;
      return got(buf, static_cast<size_t>(n));
    }
    if (events & EPOLLOUT) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(sock_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return next_or_fail();
      ssize_t n = ::send(sock_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n < 0 && would_block()) return;
      if (n < 0) return next_or_fail();
      out_.erase(out_.begin(), out_.begin() + n);
      if (out_.empty()) s_.mod_watch(sock_.get(), EPOLLIN, this);
      return;
    }
    uint8_t buf[8192];
    for (;;) {
      ssize_t n = ::recv(sock_.get(), buf, sizeof(buf), 0);
      if (n < 0 && (would_block() || errno == EINTR)) break;
      if (n <= 0) return next_or_fail();
      in_.insert(in_.end(), buf, buf + n);
    }
    if (in_.size() < 2) return;
    size_t len = (static_cast<size_t>(in_[0]) << 8) | in_[1];
    if (in_.size() - 2 < len) return;
    if (len < LDNS_HEADER_SIZE || LDNS_ID_WIRE(in_.data() + 2) != qid()) return next_or_fail();
    got(in_.data() + 2, len);
  }

  void on_timeout(Server::Clock::time_point at) {
    if (at == deadline_) next_or_fail();
  }

  void next_or_fail() {
    if (try_next()) return;
    s_.finish_forward(id_, error_reply(query_.data(), query_.size(), LDNS_RCODE_SERVFAIL, t_));
  }

  ListenKey key;
  sockaddr_storage from{};
  socklen_t from_len = 0;
  uint64_t conn_id = 0;
  Transport transport() const { return t_; }

 private:
  uint16_t qid() const { return LDNS_ID_WIRE(query_.data()); }

  void got(const uint8_t* wire, size_t len) {
    int rcode = LDNS_RCODE_WIRE(wire);
    if (rcode == LDNS_RCODE_SERVFAIL || rcode == LDNS_RCODE_REFUSED) return next_or_fail();
    s_.finish_forward(id_, std::vector<uint8_t>(wire, wire + len));
  }

  Server& s_;
  uint64_t id_;
  std::vector<uint8_t> query_;
  std::vector<Upstream> ups_;
  Transport t_;
  size_t next_ = 0;
  Fd sock_;
  Server::Clock::time_point deadline_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> in_;
};

// One control connection: a request line in, a reply line out, closed.
class ControlConn : public Watch {
 public:
  ControlConn(Server& s, Fd fd) : s_(s), fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }

  void on_event(uint32_t events) override {
    if (!replied_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
      char buf[4096];
      for (;;) {
        ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
        if (n > 0) {
          in_.append(buf, static_cast<size_t>(n));
          if (in_.size() > kMaxControlLine) return close();
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && would_block()) break;
        if (in_.find('\n') == std::string::npos) return close();
        break;
      }
      auto nl = in_.find('\n');
      if (nl == std::string::npos) return;
      json req = json::parse(in_.substr(0, nl), nullptr, false);
      json reply;
      try {
        if (!req.is_object()) throw Error(kErrDecode, "request is not a JSON object");
        reply = s_.handle_control(req);
      } catch (const std::exception& e) {
        reply = {{"ok", false}, {"error", e.what()}};
      }
      out_ = reply.dump() + "\n";
      replied_ = true;
      s_.mod_watch(fd_.get(), EPOLLOUT, this);
    }
    if (replied_) {
      while (!out_.empty()) {
        ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && would_block()) return;
        if (n < 0) break;
        out_.erase(0, static_cast<size_t>(n));
      }
      close();
    }
  }

 private:
  void close() {
    auto& v = s_.control_conns_;
    auto it = std::find_if(v.begin(), v.end(), [this](const auto& p) { return p.get() == this; });
    if (it != v.end()) {
      std::unique_ptr<Watch> self = std::move(*it);
      v.erase(it);
      s_.retire(std::move(self));
    }
  }

  Server& s_;
  Fd fd_;
  std::string in_;
  std::string out_;
  bool replied_ = false;
};

// ---------------------------------------------------------------------------------------------

Server::Server(ServerOptions options)
    : opts_(std::move(options)),
      store_(opts_.state_dir),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      udp_bufs_(kBatch * kMaxDatagram),
      rng_(std::random_device{}()) {
  if (!epoll_) throw_errno("epoll_create1");
}

Server::~Server() = default;

void Server::add_watch(int fd, uint32_t events, Watch* w) {
  w->token = next_id_++;
  tokens_[w->token] = w;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = w->token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl(ADD)");
}

void Server::mod_watch(int fd, uint32_t events, Watch* w) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = w->token;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void Server::retire_token(Watch* w) {
  if (w->token != 0) tokens_.erase(w->token);
  w->token = 0;
}

void Server::retire(std::unique_ptr<Watch> w) {
  retire_token(w.get());
  w->retired = true;
  graveyard_.push_back(std::move(w));
}

void Server::start() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_ = Fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_) throw_errno("signalfd");
  signal_watch_ = std::make_unique<FnWatch>([this](uint32_t) { on_signal(); });
  add_watch(signal_fd_.get(), EPOLLIN, signal_watch_.get());

  resolv_ = std::make_unique<ResolvConf>(opts_.resolv_conf);
  resolv_watch_ = std::make_unique<FnWatch>([this](uint32_t) {
    if (resolv_->on_readable()) cache_.clear();
  });
  add_watch(resolv_->fd(), EPOLLIN, resolv_watch_.get());

  reload_all();
  // The control socket last: a plugin that can connect finds every listener already bound.
  control_fd_ = listen_control(opts_.socket);
  control_watch_ = std::make_unique<FnWatch>([this](uint32_t) { on_control_accept(); });
  add_watch(control_fd_.get(), EPOLLIN, control_watch_.get());
  spdlog::info("serving {} registrations on {} listeners; control socket {}",
               registry_.records().size(), listeners_.size(), opts_.socket);
}

void Server::reload_all() {
  Registry fresh;
  for (auto& r : store_.load_all()) fresh.upsert(std::move(r));
  registry_ = std::move(fresh);
  for (const auto& e : rebuild()) spdlog::error("{}", e);
}

std::optional<std::string> Server::open_listener(const ListenKey& key) {
  auto l = std::make_unique<Listener>();
  l->key = key;
  sockaddr_storage ss{};
  socklen_t len = Upstream{key.addr, key.port, 0}.to_sockaddr(&ss);
  for (int type : {SOCK_DGRAM, SOCK_STREAM}) {
    Fd fd(::socket(key.addr.af(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return "socket: " + std::string(std::strerror(errno));
    int one = 1;
    // FREEBIND: the gateway address may be tentative (IPv6 DAD) or not yet configured after a
    // reboot; we listen anyway and get packets once it is there. It works for IPv6 too.
    ::setsockopt(fd.get(), SOL_IP, IP_FREEBIND, &one, sizeof(one));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (!key.addr.is_v4()) ::setsockopt(fd.get(), SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
      int size = 1 << 21;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      return "cannot listen on " + key_str(key) + (type == SOCK_DGRAM ? "/udp: " : "/tcp: ") +
             std::strerror(errno);
    }
    if (type == SOCK_STREAM && ::listen(fd.get(), 128) != 0) {
      return "listen " + key_str(key) + ": " + std::strerror(errno);
    }
    (type == SOCK_DGRAM ? l->udp : l->tcp) = std::move(fd);
  }
  Listener* raw = l.get();
  l->udp_watch = std::make_unique<FnWatch>([this, raw](uint32_t) { on_udp(*raw); });
  l->tcp_watch = std::make_unique<FnWatch>([this, raw](uint32_t) { on_tcp_accept(*raw); });
  add_watch(l->udp.get(), EPOLLIN, l->udp_watch.get());
  add_watch(l->tcp.get(), EPOLLIN, l->tcp_watch.get());
  listeners_[key] = std::move(l);
  spdlog::info("listening on {}", key_str(key));
  return std::nullopt;
}

std::vector<std::string> Server::rebuild() {
  index_ = Index::build(registry_, opts_.port);
  cache_.clear();
  std::vector<std::string> errors;
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    if (index_.listeners().count(it->first)) {
      ++it;
      continue;
    }
    spdlog::info("no longer listening on {}", key_str(it->first));
    // Sockets close now (the address may be reused at once); the watches die after the batch.
    retire(std::move(it->second->udp_watch));
    retire(std::move(it->second->tcp_watch));
    it = listeners_.erase(it);
  }
  for (const auto& [key, nets] : index_.listeners()) {
    if (!listeners_.count(key)) {
      if (auto e = open_listener(key)) errors.push_back(*e);
    }
  }
  if (registry_.records().empty()) {
    if (!idle_since_) idle_since_ = Clock::now();
  } else {
    idle_since_.reset();
  }
  return errors;
}

void Server::on_udp(Listener& l) {
  // Batches in and out: one syscall for up to kBatch queries each way.
  std::array<mmsghdr, kBatch> in{};
  std::array<iovec, kBatch> iov{};
  std::array<sockaddr_storage, kBatch> from{};
  std::array<std::vector<uint8_t>, kBatch> replies;
  std::array<mmsghdr, kBatch> out{};
  std::array<iovec, kBatch> out_iov{};
  for (int round = 0; round < 16; ++round) {
    for (int i = 0; i < kBatch; ++i) {
      iov[i] = {udp_bufs_.data() + static_cast<size_t>(i) * kMaxDatagram, kMaxDatagram};
      in[i].msg_hdr = {};
      in[i].msg_hdr.msg_name = &from[i];
      in[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      in[i].msg_hdr.msg_iov = &iov[i];
      in[i].msg_hdr.msg_iovlen = 1;
    }
    int n = ::recvmmsg(l.udp.get(), in.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return;
    int nout = 0;
    for (int i = 0; i < n; ++i) {
      if (in[i].msg_hdr.msg_flags & MSG_TRUNC) continue;
      const uint8_t* wire = udp_bufs_.data() + static_cast<size_t>(i) * kMaxDatagram;
      size_t len = in[i].msg_len;
      Decision d = answer_query(index_, addr_of(from[i]), wire, len, Transport::kUdp,
                                resolv_->servers(), rng_, &cache_);
      if (d.kind == Decision::Kind::kDrop) continue;
      replies[nout].clear();
      handle_decision(std::move(d), wire, len, Transport::kUdp, l.key, from[i],
                      in[i].msg_hdr.msg_namelen, 0, &replies[nout]);
      if (replies[nout].empty()) continue;
      out_iov[nout] = {replies[nout].data(), replies[nout].size()};
      out[nout].msg_hdr = {};
      out[nout].msg_hdr.msg_name = &from[i];
      out[nout].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
      out[nout].msg_hdr.msg_iov = &out_iov[nout];
      out[nout].msg_hdr.msg_iovlen = 1;
      ++nout;
    }
    for (int sent = 0; sent < nout;) {
      int m = ::sendmmsg(l.udp.get(), out.data() + sent, static_cast<unsigned>(nout - sent), 0);
      if (m <= 0) break;  // a full socket buffer drops the rest, as UDP would
      sent += m;
    }
    if (n < kBatch) return;
  }
}

void Server::handle_decision(Decision d, const uint8_t* wire, size_t len, Transport t,
                             const ListenKey& key, const sockaddr_storage& from, socklen_t from_len,
                             uint64_t conn_id, std::vector<uint8_t>* udp_reply) {
  if (d.kind == Decision::Kind::kReply) {
    if (t == Transport::kUdp) {
      *udp_reply = std::move(d.reply);
    } else {
      deliver_tcp(conn_id, d.reply);
    }
    return;
  }
  if (d.kind != Decision::Kind::kForward) return;
  if (forwards_.size() >= kMaxInflight) {
    auto refused = error_reply(wire, len, LDNS_RCODE_REFUSED, t);
    if (t == Transport::kUdp) {
      *udp_reply = std::move(refused);
    } else {
      deliver_tcp(conn_id, refused);
    }
    return;
  }
  start_forward(std::vector<uint8_t>(wire, wire + len), std::move(d.upstreams), t, key, from,
                from_len, conn_id);
}

void Server::start_forward(std::vector<uint8_t> query, std::vector<Upstream> upstreams, Transport t,
                           const ListenKey& key, const sockaddr_storage& from, socklen_t from_len,
                           uint64_t conn_id) {
  uint64_t id = next_id_++;
  auto f = std::make_unique<Forward>(*this, id, std::move(query), std::move(upstreams), t);
  f->key = key;
  f->from = from;
  f->from_len = from_len;
  f->conn_id = conn_id;
  Forward* raw = f.get();
  forwards_[id] = std::move(f);
  if (t == Transport::kTcp) {
    if (auto it = conns_.find(conn_id); it != conns_.end()) it->second->pending_++;
  }
  raw->next_or_fail();
}

void Server::finish_forward(uint64_t id, std::vector<uint8_t> reply) {
  auto it = forwards_.find(id);
  if (it == forwards_.end()) return;
  std::unique_ptr<Forward> f = std::move(it->second);
  forwards_.erase(it);
  if (!reply.empty()) {
    if (f->transport() == Transport::kUdp) {
      deliver_udp(f->key, f->from, f->from_len, reply);
    } else {
      deliver_tcp(f->conn_id, reply);
    }
  }
  if (f->transport() == Transport::kTcp) {
    if (auto c = conns_.find(f->conn_id); c != conns_.end()) c->second->pending_--;
  }
  retire(std::move(f));
}

void Server::deliver_udp(const ListenKey& key, const sockaddr_storage& to, socklen_t to_len,
                         const std::vector<uint8_t>& reply) {
  auto it = listeners_.find(key);
  if (it == listeners_.end()) return;  // the network went away meanwhile
  ::sendto(it->second->udp.get(), reply.data(), reply.size(), 0,
           reinterpret_cast<const sockaddr*>(&to), to_len);
}

void Server::deliver_tcp(uint64_t conn_id, const std::vector<uint8_t>& reply) {
  if (auto it = conns_.find(conn_id); it != conns_.end()) it->second->send_message(reply);
}

void Server::on_tcp_accept(Listener& l) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    Fd fd(::accept4(l.tcp.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                    SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    IpAddr peer = addr_of(ss);
    // Not an open resolver: a stranger's connection is closed without a word.
    if (conns_.size() >= kMaxTcpConns || !index_.scope_for(peer)) continue;
    uint64_t id = next_id_++;
    auto c = std::make_unique<TcpConn>(*this, id, std::move(fd), peer, l.key);
    add_watch(c->fd(), EPOLLIN, c.get());
    conns_[id] = std::move(c);
  }
}

void Server::on_control_accept() {
  for (;;) {
    Fd fd(::accept4(control_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    if (!peer_trusted(fd.get())) {
      spdlog::warn("control connection from an untrusted user refused");
      continue;
    }
    auto c = std::make_unique<ControlConn>(*this, std::move(fd));
    add_watch(c->fd(), EPOLLIN, c.get());
    control_conns_.push_back(std::move(c));
  }
}

void Server::on_signal() {
  signalfd_siginfo si{};
  while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
    if (si.ssi_signo == SIGHUP) {
      spdlog::info("SIGHUP: reloading registrations and {}", opts_.resolv_conf);
      resolv_->reload();
      reload_all();  // clears the cache too
    } else {
      spdlog::info("signal {}: exiting", si.ssi_signo);
      stop_ = true;
    }
  }
}

json Server::handle_control(const json& req) {
  std::string op = req.value("op", "");
  if (op == "ping") return {{"ok", true}, {"pid", ::getpid()}};
  if (op == "list") return list();
  if (op == "add") {
    if (!req.contains("record")) throw Error(kErrDecode, "add needs a record");
    Record r = Record::from_json(req["record"]);
    auto old = registry_.records().find(r.key);
    std::optional<Record> previous;
    if (old != registry_.records().end()) previous = old->second;
    AttachmentKey key = r.key;
    std::vector<IpAddr> gateways = r.gateways;
    uint16_t port = r.net.port.value_or(opts_.port);
    registry_.upsert(std::move(r));
    auto errors = rebuild();
    for (const auto& gw : gateways) {
      if (!listeners_.count(ListenKey{gw, port})) {
        // Registered names nobody can ask for would make ADD lie: undo and say why.
        if (previous) {
          registry_.upsert(std::move(*previous));
        } else {
          registry_.erase(key);
        }
        rebuild();
        std::string why;
        for (const auto& e : errors) why += (why.empty() ? "" : "; ") + e;
        throw Error(kErrInternal, why.empty() ? "cannot listen on " + gw.str() : why);
      }
    }
    spdlog::info("registered {}", key.str());
    return {{"ok", true}};
  }
  if (op == "del") {
    AttachmentKey key{req.value("network", ""), req.value("containerID", ""),
                      req.value("ifname", "")};
    bool had = registry_.erase(key);
    if (had) {
      rebuild();
      spdlog::info("unregistered {}", key.str());
    }
    return {{"ok", true}, {"removed", had}};
  }
  if (op == "check") {
    AttachmentKey key{req.value("network", ""), req.value("containerID", ""),
                      req.value("ifname", "")};
    return {{"ok", true}, {"registered", registry_.records().count(key) > 0}};
  }
  if (op == "sync") {
    std::string network = req.value("network", "");
    registry_.replace_network(network, store_.load_all(network));
    for (const auto& e : rebuild()) spdlog::error("{}", e);
    return {{"ok", true}};
  }
  throw Error(kErrDecode, "unknown op", op);
}

json Server::list() const {
  json nets = json::array();
  for (const auto& net : index_.networks()) {
    json listen = json::array();
    for (const auto& [key, ids] : index_.listeners()) {
      for (uint32_t i : ids) {
        if (index_.networks()[i].name == net.name) listen.push_back(key_str(key));
      }
    }
    json containers = json::array();
    for (const auto& [key, r] : registry_.records()) {
      if (key.network != net.name) continue;
      json addrs = json::array();
      for (const auto& a : r.addresses) addrs.push_back(a.addr().str());
      containers.push_back({{"containerID", key.container_id},
                            {"ifname", key.ifname},
                            {"names", r.network_names()},
                            {"containerAliases", r.container_aliases},
                            {"addresses", addrs},
                            {"upstreams", r.upstreams}});
    }
    nets.push_back({{"name", net.name},
                    {"domain", net.settings.domain},
                    {"internal", net.settings.internal},
                    {"ttl", net.settings.ttl},
                    {"listen", listen},
                    {"upstreams", net.settings.upstreams},
                    {"containers", containers}});
  }
  json host = json::array();
  for (const auto& u : resolv_->servers()) host.push_back(u.str());
  return {{"ok", true}, {"pid", ::getpid()}, {"networks", nets}, {"hostUpstreams", host}};
}

void Server::expire_forwards(Clock::time_point now) {
  while (!forward_deadlines_.empty() && forward_deadlines_.begin()->first <= now) {
    auto [at, id] = *forward_deadlines_.begin();
    forward_deadlines_.erase(forward_deadlines_.begin());
    if (auto it = forwards_.find(id); it != forwards_.end()) it->second->on_timeout(at);
  }
}

void Server::sweep_tcp(Clock::time_point now) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (it->second->idle(now)) {
      std::unique_ptr<Watch> c = std::move(it->second);
      it = conns_.erase(it);
      retire(std::move(c));
    } else {
      ++it;
    }
  }
}

int Server::next_timeout_ms(Clock::time_point now) const {
  auto wake = now + std::chrono::seconds(1);  // the TCP idle sweep and the idle exit check
  if (!forward_deadlines_.empty()) wake = std::min(wake, forward_deadlines_.begin()->first);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count();
  return static_cast<int>(std::max<int64_t>(ms, 0) + 1);
}

void Server::run() {
  std::array<epoll_event, 64> events{};
  auto last_sweep = Clock::now();
  while (!stop_) {
    int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                         next_timeout_ms(Clock::now()));
    if (n < 0 && errno != EINTR) throw_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
      auto it = tokens_.find(events[i].data.u64);
      if (it == tokens_.end() || it->second->retired) continue;
      it->second->on_event(events[i].events);
    }
    auto now = Clock::now();
    expire_forwards(now);
    if (now - last_sweep >= std::chrono::seconds(1)) {
      sweep_tcp(now);
      last_sweep = now;
    }
    graveyard_.clear();
    if (opts_.idle_exit_s > 0 && idle_since_ && control_conns_.empty() &&
        now - *idle_since_ >= std::chrono::seconds(opts_.idle_exit_s)) {
      spdlog::info("no registrations for {} s: exiting", opts_.idle_exit_s);
      stop_ = true;
    }
  }
  // Nobody may connect to a daemon that is going away; the lock is released by our exit.
  ::unlink(opts_.socket.c_str());
}

}  // namespace cni::dns
