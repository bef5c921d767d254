#include "plugins/dns-sidecar/server.h"

#include <arpa/inet.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "common/control.h"
#include "common/error.h"
#include "common/netconf.h"
#include "common/skel.h"
#include "plugins/dns-sidecar/ldns_ptr.h"

namespace cni::dns {

namespace {

constexpr int kBatch = 32;             // datagrams per recvmmsg/sendmmsg
constexpr size_t kMaxDatagram = 4096;  // larger queries are dropped (MSG_TRUNC)
constexpr size_t kMaxInflight = 1024;  // forwarded queries at once; beyond: REFUSED (Docker)
// Of them, from one client address: a container that floods names the upstreams never answer
// leaves the other containers three quarters of the forwards.
constexpr size_t kMaxInflightPerClient = kMaxInflight / 4;
// Client TCP connections at once; at the cap a new one closes the one idle longest (RFC 7766
// 6.2.3), or is closed itself when every one waits for a forward.
constexpr size_t kMaxTcpConns = 1024;
constexpr size_t kMaxControlLine = 1 << 20;
// A connection without progress (nothing read, nothing written, no forward pending) this long
// is closed.
constexpr auto kTcpIdle = std::chrono::seconds(10);
// Unsent replies a TCP connection may hold: beyond, the daemon reads no more from a client that
// does not read its answers (it is closed once idle), instead of buffering without end.
constexpr size_t kMaxTcpOut = 64 * 1024;
// Reads per TCP event: one busy client cannot keep the loop to itself.
constexpr int kTcpReadsPerEvent = 16;
// Open files the daemon asks for (every connection and forward is one), whatever soft limit it
// was started with: systemd's default of 1024 is less than kMaxTcpConns + kMaxInflight.
constexpr rlim_t kWantedFds = 8192;

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
  bool accept_paused = false;  // out of fds: accepting again at the next sweep
};

// One client TCP connection: length-prefixed messages in, any number per connection. Its
// buffers are bounded: at most one incomplete message and a read's worth in, kMaxTcpOut (and
// the reply that crossed it) out.
class TcpConn : public Watch {
 public:
  TcpConn(Server& s, uint64_t id, Fd fd, IpAddr peer, ListenKey key)
      : s_(s), id_(id), fd_(std::move(fd)), peer_(peer), key_(key), last_(Server::Clock::now()) {}

  void on_event(uint32_t events) override {
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) flush();
    if (retired) return;
    if (!paused_) process();  // messages that arrived while replies were backed up
    if (!retired && !paused_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) read_some();
  }

  void send_message(const std::vector<uint8_t>& msg) {
    out_.push_back(static_cast<uint8_t>(msg.size() >> 8));
    out_.push_back(static_cast<uint8_t>(msg.size() & 0xff));
    out_.insert(out_.end(), msg.begin(), msg.end());
    flush();
  }

  int fd() const { return fd_.get(); }
  Server::Clock::time_point last_active() const { return last_; }
  bool idle(Server::Clock::time_point now) const { return pending_ == 0 && now - last_ > kTcpIdle; }
  int pending_ = 0;  // forwarded queries whose answers go here

  // Closes the socket at once (an eviction frees its fd for the connection that caused it);
  // the object goes after the current batch of events.
  void close() {
    auto it = s_.conns_.find(id_);
    if (it != s_.conns_.end()) {
      std::unique_ptr<Watch> self = std::move(it->second);
      s_.conns_.erase(it);
      s_.retire(std::move(self));
    }
    fd_ = Fd();
  }

 private:
  void read_some() {
    uint8_t buf[8192];
    for (int i = 0; i < kTcpReadsPerEvent && !paused_; ++i) {
      ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        in_.insert(in_.end(), buf, buf + n);
        last_ = Server::Clock::now();
        process();
        if (retired) return;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && would_block()) return;
      close();  // EOF or error
      return;
    }
  }

  // Answers the complete messages in `in_` while the replies waiting to go out are few.
  void process() {
    size_t off = 0;
    while (in_.size() - off >= 2 && out_.size() < kMaxTcpOut) {
      size_t len = (static_cast<size_t>(in_[off]) << 8) | in_[off + 1];
      if (in_.size() - off - 2 < len) break;
      // Answering only appends to out_ (flush never comes back here): in_ stays put.
      const uint8_t* msg = in_.data() + off + 2;
      off += 2 + len;
      Decision d = answer_query(s_.index_, peer_, msg, len, Transport::kTcp, s_.resolv_->servers(),
                                s_.rng_, &s_.cache_);
      if (d.kind == Decision::Kind::kDrop) {
        close();  // a malformed message: the stream cannot be trusted any further
        return;
      }
      s_.handle_decision(std::move(d), msg, len, Transport::kTcp, key_, peer_, {}, 0, id_, nullptr);
      if (retired) return;
    }
    in_.erase(in_.begin(), in_.begin() + static_cast<ptrdiff_t>(off));
    if (out_.size() >= kMaxTcpOut && !paused_) {
      paused_ = true;  // the client does not read: neither do we, until it does
      update_events();
    }
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
      last_ = Server::Clock::now();
    }
    if (paused_ && out_.size() < kMaxTcpOut / 2) paused_ = false;
    update_events();
  }

  void update_events() {
    uint32_t want = (paused_ ? 0 : uint32_t{EPOLLIN}) | (out_.empty() ? 0 : uint32_t{EPOLLOUT});
    if (want != events_) {
      events_ = want;
      s_.mod_watch(fd_.get(), want, this);
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
  uint32_t events_ = EPOLLIN;
  bool paused_ = false;
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
    // One message and not a byte more: a server that streams without end costs nothing.
    uint8_t buf[8192];
    for (;;) {
      size_t need = 2;
      if (in_.size() >= 2) {
        size_t len = (static_cast<size_t>(in_[0]) << 8) | in_[1];
        if (len < LDNS_HEADER_SIZE) return next_or_fail();
        need = 2 + len;
        if (in_.size() == need) break;
      }
      ssize_t n = ::recv(sock_.get(), buf, std::min(sizeof(buf), need - in_.size()), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && would_block()) return;
      if (n <= 0) return next_or_fail();
      in_.insert(in_.end(), buf, buf + n);
    }
    got(in_.data() + 2, in_.size() - 2);  // got() checks the ID with the rest
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
  IpAddr client;
  Transport transport() const { return t_; }

 private:
  uint16_t qid() const { return LDNS_ID_WIRE(query_.data()); }

  void got(const uint8_t* wire, size_t len) {
    // Garbage, a reply to another question, and SERVFAIL or REFUSED: that server failed.
    auto reply = upstream_reply(query_.data(), query_.size(), wire, len, t_);
    if (!reply) {
      spdlog::debug("forward: {} sent no reply to the query", ups_[next_ - 1].str());
      return next_or_fail();
    }
    int rcode = LDNS_RCODE_WIRE(reply->data());
    if (rcode == LDNS_RCODE_SERVFAIL || rcode == LDNS_RCODE_REFUSED) return next_or_fail();
    s_.finish_forward(id_, std::move(*reply));
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

  // A reply that waits for etcd (a cluster ADD/DEL): sent by finish().
  void finish(const json& reply) {
    ticket_ = 0;
    out_ = reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    replied_ = true;
    s_.mod_watch(fd_.get(), EPOLLOUT, this);
  }

  void on_event(uint32_t events) override {
    if (ticket_ != 0) {
      if (events & (EPOLLHUP | EPOLLERR)) close();  // the plugin gave up; etcd finishes anyway
      return;
    }
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
      json req = parse_bounded(std::string_view(in_).substr(0, nl));
      json reply;
      try {
        if (!req.is_object()) throw Error(kErrDecode, "request is not a JSON object");
        reply = s_.handle_control(req);
      } catch (const std::exception& e) {
        reply = {{"ok", false}, {"error", e.what()}};
      }
      if (auto t = reply.find("_ticket"); t != reply.end()) {
        ticket_ = t->get<uint64_t>();
        reply.erase("_ticket");
        pending_ = std::move(reply);
        s_.awaiting_[ticket_] = this;
        s_.mod_watch(fd_.get(), 0, this);
        return;
      }
      out_ = reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
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

 public:
  json pending_;  // the reply so far, while waiting for etcd

 private:
  void close() {
    if (ticket_ != 0) s_.awaiting_.erase(ticket_);
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
  uint64_t ticket_ = 0;
};

// ---------------------------------------------------------------------------------------------

namespace {

void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= kWantedFds) return;
  rlim_t was = rl.rlim_cur;
  rl.rlim_cur = std::min(kWantedFds, rl.rlim_max);  // RLIM_INFINITY is the largest value
  if (rl.rlim_cur > was && ::setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
  constexpr rlim_t kNeeded = kMaxTcpConns + kMaxInflight + 64;
  if (rl.rlim_cur < kNeeded) {
    spdlog::warn(
        "open file limit {} is below the {} the daemon may need: connections and "
        "forwards beyond it wait or fail",
        rl.rlim_cur, kNeeded);
  } else if (rl.rlim_cur > was) {
    spdlog::info("open file limit raised from {} to {}", was, rl.rlim_cur);
  }
}

}  // namespace

Server::Server(ServerOptions options)
    : opts_(std::move(options)),
      store_(opts_.state_dir),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      udp_bufs_(kBatch * kMaxDatagram),
      rng_(std::random_device{}()) {
  if (!epoll_) throw_errno("epoll_create1");
  index_ = Index(opts_.port);
  node_ = opts_.node;
  if (node_.empty()) {
    utsname u{};
    node_ = ::uname(&u) == 0 ? u.nodename : "localhost";
  }
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
  raise_fd_limit();
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

  if (!opts_.cluster_file.empty()) {
    cluster::ClusterConfig config = cluster::ClusterConfig::load(opts_.cluster_file);
    node_ = config.node;
    reload_all();
    cluster_ = std::make_unique<ClusterSync>(std::move(config), opts_.lease_ttl);
    std::vector<Record> local;
    for (const auto& [key, r] : registry_.records()) {
      if (key.node == node_) local.push_back(r);
    }
    cluster_->start(local);
    cluster_watch_ = std::make_unique<FnWatch>([this](uint32_t) { on_cluster(); });
    add_watch(cluster_->fd(), EPOLLIN, cluster_watch_.get());
  } else {
    reload_all();
  }
  // The control socket last: a plugin that can connect finds every listener already bound.
  control_fd_ = control::listen(opts_.socket);
  control_watch_ = std::make_unique<FnWatch>([this](uint32_t) { on_control_accept(); });
  add_watch(control_fd_.get(), EPOLLIN, control_watch_.get());
  spdlog::info("node {}: serving {} registrations on {} listeners; control socket {}", node_,
               registry_.records().size(), listeners_.size(), opts_.socket);
}

void Server::reload_all() {
  // Local records only: remote ones are the cluster's (cluster.h), not the state dir's.
  std::vector<Record> records = store_.load_all();
  for (auto& r : records) r.key.node = node_;
  replace_local({}, std::move(records));
  for (const auto& e : sync_listeners()) spdlog::error("{}", e);
}

void Server::replace_local(const std::optional<std::string>& network, std::vector<Record> records) {
  std::set<AttachmentKey> keep;
  for (const auto& r : records) keep.insert(r.key);
  std::vector<AttachmentKey> gone;
  for (const auto& [key, r] : registry_.records()) {
    if (key.node == node_ && (!network || key.network == *network) && !keep.count(key)) {
      gone.push_back(key);
    }
  }
  for (const auto& k : gone) {
    if (const Record* r = registry_.find(k); cluster_ && r && r->cluster) cluster_->unpublish(k, 0);
    drop_record(k);
  }
  for (auto& r : records) {
    if (cluster_ && r.cluster) cluster_->publish(r, 0);
    put_record(std::move(r));
  }
}

void Server::on_cluster() {
  for (auto& u : cluster_->take()) {
    switch (u.kind) {
      case ClusterUpdate::Kind::kSnapshot: {
        // A fresh read: the remote view becomes exactly this (nothing stale, nothing twice).
        std::set<AttachmentKey> keep;
        for (const auto& r : u.records) keep.insert(r.key);
        std::vector<AttachmentKey> gone;
        for (const auto& [key, r] : registry_.records()) {
          if (key.node != node_ && !keep.count(key)) gone.push_back(key);
        }
        for (const auto& k : gone) drop_record(k);
        for (auto& r : u.records) put_record(std::move(r));
        spdlog::info("cluster: {} remote records ({} dropped)", u.records.size(), gone.size());
        break;
      }
      case ClusterUpdate::Kind::kPut:
        if (u.records[0].key.node != node_) put_record(std::move(u.records[0]));
        break;
      case ClusterUpdate::Kind::kDelete:
        if (u.key.node != node_) drop_record(u.key);
        break;
      case ClusterUpdate::Kind::kDone:
        finish_request(u.ticket, u.published, u.error);
        break;
    }
  }
}

void Server::finish_request(uint64_t ticket, bool published, const std::string& error) {
  if (!published && !error.empty()) spdlog::warn("cluster: {}", error);
  auto it = awaiting_.find(ticket);
  if (it == awaiting_.end()) return;  // ticket 0 (no one waits), or the plugin went away
  ControlConn* c = it->second;
  awaiting_.erase(it);
  json reply = std::move(c->pending_);
  reply["published"] = published;
  if (!published) reply["warning"] = error;
  c->finish(reply);
}

void Server::put_record(Record r) {
  index_.add(r, r.key.node == node_);
  registry_.upsert(std::move(r));
}

bool Server::drop_record(const AttachmentKey& key) {
  index_.remove(key);
  return registry_.erase(key);
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
    // The kernel's largest backlog (net.core.somaxconn): a burst of connections beyond it has
    // its SYNs dropped, and a good client among them waits a second for its retry.
    if (type == SOCK_STREAM && ::listen(fd.get(), SOMAXCONN) != 0) {
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

std::vector<std::string> Server::sync_listeners() {
  // O(listeners), one per network gateway: the index keeps the set current record by record.
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
  if (registry_.count_of_node(node_) == 0) {
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
      handle_decision(std::move(d), wire, len, Transport::kUdp, l.key, addr_of(from[i]), from[i],
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
                             const ListenKey& key, const IpAddr& client,
                             const sockaddr_storage& from, socklen_t from_len, uint64_t conn_id,
                             std::vector<uint8_t>* udp_reply) {
  if (d.kind == Decision::Kind::kReply) {
    if (t == Transport::kUdp) {
      *udp_reply = std::move(d.reply);
    } else {
      deliver_tcp(conn_id, d.reply);
    }
    return;
  }
  if (d.kind != Decision::Kind::kForward) return;
  auto mine = forwards_of_.find(client);
  if (forwards_.size() >= kMaxInflight ||
      (mine != forwards_of_.end() && mine->second >= kMaxInflightPerClient)) {
    auto refused = error_reply(wire, len, LDNS_RCODE_REFUSED, t);
    if (t == Transport::kUdp) {
      *udp_reply = std::move(refused);
    } else {
      deliver_tcp(conn_id, refused);
    }
    return;
  }
  start_forward(std::vector<uint8_t>(wire, wire + len), std::move(d.upstreams), t, key, client,
                from, from_len, conn_id);
}

void Server::start_forward(std::vector<uint8_t> query, std::vector<Upstream> upstreams, Transport t,
                           const ListenKey& key, const IpAddr& client, const sockaddr_storage& from,
                           socklen_t from_len, uint64_t conn_id) {
  uint64_t id = next_id_++;
  auto f = std::make_unique<Forward>(*this, id, std::move(query), std::move(upstreams), t);
  f->key = key;
  f->from = from;
  f->from_len = from_len;
  f->conn_id = conn_id;
  f->client = client;
  ++forwards_of_[client];
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
  if (auto c = forwards_of_.find(f->client); c != forwards_of_.end() && --c->second == 0) {
    forwards_of_.erase(c);
  }
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
  // A batch at a time (the listener stays readable): a burst of connections cannot keep the
  // loop from the queries.
  for (int i = 0; i < kBatch; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    Fd fd(::accept4(l.tcp.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                    SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EMFILE || errno == ENFILE) {
        // The connection stays queued; accepting now would only fail again at once, for ever
        // (the listener stays readable). Forwards and replies go on meanwhile.
        spdlog::warn("out of file descriptors ({}): not accepting on {} for a second",
                     std::strerror(errno), key_str(l.key));
        l.accept_paused = true;
        mod_watch(l.tcp.get(), 0, l.tcp_watch.get());
      }
      return;
    }
    IpAddr peer = addr_of(ss);
    // Not an open resolver: a stranger's connection is closed without a word.
    if (!index_.scope_for(peer)) continue;
    if (conns_.size() >= kMaxTcpConns && !evict_idlest_conn()) continue;
    uint64_t id = next_id_++;
    auto c = std::make_unique<TcpConn>(*this, id, std::move(fd), peer, l.key);
    add_watch(c->fd(), EPOLLIN, c.get());
    conns_[id] = std::move(c);
  }
}

bool Server::evict_idlest_conn() {
  TcpConn* idlest = nullptr;
  for (const auto& [id, c] : conns_) {
    if (c->pending_ == 0 && (!idlest || c->last_active() < idlest->last_active())) {
      idlest = c.get();
    }
  }
  if (idlest) idlest->close();
  return idlest != nullptr;
}

void Server::on_control_accept() {
  for (;;) {
    Fd fd(::accept4(control_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    if (!control::peer_trusted(fd.get())) {
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
      cache_.clear();
      reload_all();
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
  if (op == "add") return control_add(req);
  if (op == "del") return control_del(req);
  if (op == "check") {
    return {{"ok", true}, {"registered", registry_.find(control_key(req)) != nullptr}};
  }
  if (op == "sync") {
    std::string network = req.value("network", "");
    check_network_name(network);  // a directory name under the state dir: never "" or "../x"
    std::vector<Record> records = store_.load_all(network);
    for (auto& r : records) r.key.node = node_;
    replace_local(network, std::move(records));
    for (const auto& e : sync_listeners()) spdlog::error("{}", e);
    return {{"ok", true}};
  }
  throw Error(kErrDecode, "unknown op", op);
}

namespace {

// A key from the control socket names a state file: each part is checked as plugin_main checks
// it in a CNI call, so that "../x" never reaches a path.
void check_key(const AttachmentKey& key) {
  check_network_name(key.network);
  if (!valid_container_id(key.container_id)) {
    throw Error(kErrDecode, "invalid containerID", key.container_id);
  }
  if (auto why = invalid_ifname_reason(key.ifname)) throw Error(kErrDecode, "invalid ifname", *why);
}

}  // namespace

AttachmentKey Server::control_key(const json& req) const {
  AttachmentKey key{
      {req.value("network", ""), req.value("containerID", ""), req.value("ifname", "")}, node_};
  check_key(key);
  return key;
}

json Server::control_add(const json& req) {
  if (!req.contains("record")) throw Error(kErrDecode, "add needs a record");
  Record r = Record::from_json(req["record"]);
  check_key(r.key);
  r.key.node = node_;
  std::optional<Record> previous;
  if (const Record* old = registry_.find(r.key)) previous = *old;
  AttachmentKey key = r.key;
  std::vector<IpAddr> gateways = r.gateways;
  uint16_t port = r.net.port.value_or(opts_.port);
  put_record(std::move(r));
  auto errors = sync_listeners();
  for (const auto& gw : gateways) {
    if (!listeners_.count(ListenKey{gw, port})) {
      // Registered names nobody can ask for would make ADD lie: undo and say why.
      if (previous) {
        put_record(std::move(*previous));
      } else {
        drop_record(key);
      }
      sync_listeners();
      std::string why;
      for (const auto& e : errors) why += (why.empty() ? "" : "; ") + e;
      throw Error(kErrInternal, why.empty() ? "cannot listen on " + gw.str() : why);
    }
  }
  spdlog::info("registered {}", key.str());
  if (const Record* now = registry_.find(key); cluster_ && now->cluster) {
    // The reply waits until etcd has it, or says why not (on_cluster).
    uint64_t ticket = next_id_++;
    cluster_->publish(*now, ticket);
    return {{"ok", true}, {"_ticket", ticket}};
  }
  return {{"ok", true}};
}

json Server::control_del(const json& req) {
  AttachmentKey key = control_key(req);
  const Record* r = registry_.find(key);
  bool published = r && r->cluster;
  bool had = drop_record(key);
  if (had) {
    sync_listeners();
    spdlog::info("unregistered {}", key.str());
  }
  if (cluster_ && (published || !had)) {
    // Gone from every host at once, not after the lease; an unknown key is deleted too, in
    // case an earlier daemon published it.
    uint64_t ticket = next_id_++;
    cluster_->unpublish(key, ticket);
    return {{"ok", true}, {"removed", had}, {"_ticket", ticket}};
  }
  return {{"ok", true}, {"removed", had}};
}

json Server::list() const {
  json nets = json::array();
  for (uint32_t ni = 0; ni < index_.networks().size(); ++ni) {
    const NetworkView& net = index_.networks()[ni];
    if (net.records == 0) continue;
    json listen = json::array();
    for (const auto& [key, ids] : index_.listeners()) {
      if (ids.count(ni)) listen.push_back(key_str(key));
    }
    json containers = json::array();
    auto from = registry_.records().lower_bound(AttachmentKey{{net.name, "", ""}, ""});
    for (auto it = from; it != registry_.records().end() && it->first.network == net.name; ++it) {
      const auto& [key, r] = *it;
      json addrs = json::array();
      for (const auto& a : r.addresses) addrs.push_back(a.addr().str());
      containers.push_back({{"containerID", key.container_id},
                            {"ifname", key.ifname},
                            {"node", key.node},
                            {"local", key.node == node_},
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
  // resolv_ is made by start(): a Server that handle_control drives without it (the control
  // fuzz target) has no host servers yet.
  if (resolv_) {
    for (const auto& u : resolv_->servers()) host.push_back(u.str());
  }
  json cl = nullptr;
  if (cluster_)
    cl = {{"node", node_}, {"connected", cluster_->connected()}, {"ttl", cluster_->ttl()}};
  return {{"ok", true},
          {"pid", ::getpid()},
          {"node", node_},
          {"cluster", cl},
          {"networks", nets},
          {"hostUpstreams", host},
          {"eventFailures", event_failures_}};
}

void Server::expire_forwards(Clock::time_point now) {
  while (!forward_deadlines_.empty() && forward_deadlines_.begin()->first <= now) {
    auto [at, id] = *forward_deadlines_.begin();
    forward_deadlines_.erase(forward_deadlines_.begin());
    if (auto it = forwards_.find(id); it != forwards_.end()) it->second->on_timeout(at);
  }
}

void Server::sweep_tcp(Clock::time_point now) {
  std::vector<TcpConn*> idle;
  for (const auto& [id, c] : conns_) {
    if (c->idle(now)) idle.push_back(c.get());
  }
  for (TcpConn* c : idle) c->close();
}

void Server::resume_accepting() {
  for (auto& [key, l] : listeners_) {
    if (!l->accept_paused) continue;
    l->accept_paused = false;
    mod_watch(l->tcp.get(), EPOLLIN, l->tcp_watch.get());
  }
}

int Server::next_timeout_ms(Clock::time_point now) const {
  auto wake = now + std::chrono::seconds(1);  // the TCP idle sweep and the idle exit check
  if (!forward_deadlines_.empty()) wake = std::min(wake, forward_deadlines_.begin()->first);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count();
  return static_cast<int>(std::max<int64_t>(ms, 0) + 1);
}

template <class F>
void Server::contained(const char* what, F&& f) noexcept {
  try {
    std::forward<F>(f)();
    return;
  } catch (const std::exception& e) {
    ++event_failures_;
    try {
      spdlog::error("{} failed (contained, {} so far): {}", what, event_failures_,
                    printable(e.what()));
    } catch (...) {
    }
  } catch (...) {
    ++event_failures_;
    try {
      spdlog::error("{} failed (contained, {} so far)", what, event_failures_);
    } catch (...) {
    }
  }
}

void Server::adopt_watch(int fd, uint32_t events, std::unique_ptr<Watch> w) {
  add_watch(fd, events, w.get());
  adopted_.push_back(std::move(w));
}

bool Server::run_once(int max_wait_ms) {
  std::array<epoll_event, 64> events{};
  int timeout = std::min(max_wait_ms, next_timeout_ms(Clock::now()));
  if (timeout < 0) timeout = max_wait_ms;
  int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
  if (n < 0 && errno != EINTR) throw_errno("epoll_wait");
  for (int i = 0; i < n; ++i) {
    // Copies: epoll_event is packed on x86-64, its 64-bit data 4-aligned, so a reference to a
    // member (find's const key&) would be misaligned (clang's UBSan stops the daemon there).
    const uint64_t token = events[i].data.u64;
    const uint32_t what = events[i].events;
    auto it = tokens_.find(token);
    if (it == tokens_.end() || it->second->retired) continue;
    Watch* w = it->second;
    contained("event", [&] { w->on_event(what); });
  }
  auto now = Clock::now();
  contained("forward timeout", [&] { expire_forwards(now); });
  if (now - last_sweep_ >= std::chrono::seconds(1)) {
    contained("TCP sweep", [&] { sweep_tcp(now); });
    contained("TCP accept", [&] { resume_accepting(); });
    last_sweep_ = now;
  }
  graveyard_.clear();
  if (opts_.idle_exit_s > 0 && idle_since_ && control_conns_.empty() &&
      now - *idle_since_ >= std::chrono::seconds(opts_.idle_exit_s)) {
    spdlog::info("no registrations for {} s: exiting", opts_.idle_exit_s);
    stop_ = true;
  }
  return !stop_;
}

void Server::run() {
  while (run_once(std::numeric_limits<int>::max())) {
  }
  // Nobody may connect to a daemon that is going away; the lock is released by our exit.
  ::unlink(opts_.socket.c_str());
}

}  // namespace cni::dns
