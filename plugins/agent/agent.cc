#include "plugins/agent/agent.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>

#include "common/control.h"
#include "common/error.h"
#include "common/netconf.h"

namespace cni::agent {

namespace {

using Clock = std::chrono::steady_clock;

Prefix range_of(const json& req) {
  auto r = get_string(req, "range", "request");
  auto p = r ? Prefix::parse(*r) : std::nullopt;
  if (!p) throw_config("request.range must be a CIDR");
  return p->network();
}

int block_len_of(const json& req, const Prefix& range) {
  int len = static_cast<int>(get_int(req, "blockSize", "request", 1, 128).value_or(24));
  check_block_size(range, len, "request.blockSize");
  return len;
}

json prefixes_json(const std::vector<Prefix>& ps) {
  json a = json::array();
  for (const Prefix& p : ps) a.push_back(p.str());
  return a;
}

// The block a "<prefix>/blocks/<range id>/<block id>" key names.
std::optional<Claim> claim_of_key(const std::string& key, const std::string& blocks_root) {
  if (!key.starts_with(blocks_root)) return std::nullopt;
  std::string rest = key.substr(blocks_root.size());
  auto slash = rest.find('/');
  if (slash == std::string::npos) return std::nullopt;
  auto r = parse_prefix_id(rest.substr(0, slash));
  auto b = parse_prefix_id(rest.substr(slash + 1));
  if (!r || !b || !r->contains(b->addr()) || b->len() < r->len()) return std::nullopt;
  return Claim{*r, *b};
}

// Sleeps up to `ms`, waking early when `stop` is set.
void nap(const std::atomic<bool>& stop, int ms) {
  for (int waited = 0; waited < ms && !stop.load(); waited += 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

json node_to_json(const NodeRecord& n) {
  json blocks = json::array();
  for (const Prefix& b : n.blocks) blocks.push_back(b.str());
  return {{"node", n.node},
          {"address", n.underlay.str()},
          {"vtepMac", n.vtep_mac.str()},
          {"blocks", blocks}};
}

std::optional<NodeRecord> node_from_json(const std::string& text) {
  json j = parse_bounded(text);
  if (!j.is_object()) return std::nullopt;
  NodeRecord n;
  n.node = j.value("node", "");
  auto addr = IpAddr::parse(j.value("address", ""));
  // Every agent publishes its VTEP MAC; a record without a valid one cannot be reached.
  auto mac = Mac::parse(j.value("vtepMac", ""));
  if (!cluster::valid_node_name(n.node) || !addr || !mac) return std::nullopt;
  n.underlay = *addr;
  n.vtep_mac = *mac;
  const json& blocks = j.contains("blocks") ? j["blocks"] : json::array();
  if (!blocks.is_array()) return std::nullopt;
  for (const json& b : blocks) {
    auto p = b.is_string() ? Prefix::parse(b.get<std::string>()) : std::nullopt;
    if (!p) return std::nullopt;
    n.blocks.push_back(p->network());
  }
  return n;
}

Agent::Agent(cluster::ClusterConfig c, AgentOptions o)
    : c_(std::move(c)), o_(o), state_path_(c_.state_dir + "/claims.json") {}

Agent::~Agent() {
  stopping_ = true;
  cv_.notify_all();
  for (std::thread* t : {&session_, &watcher_, &sinker_}) {
    if (t->joinable()) t->join();
  }
}

void Agent::add_sink(std::unique_ptr<PeerSink> sink) { sinks_.push_back(std::move(sink)); }

std::string Agent::node_key() const { return c_.key("nodes/" + c_.node); }

std::string Agent::block_key(const Claim& cl) const {
  return c_.key("blocks/" + prefix_id(cl.range) + "/" + prefix_id(cl.block));
}

NodeRecord Agent::self_record() const {
  NodeRecord n;
  n.node = c_.node;
  n.underlay = c_.address;
  n.vtep_mac = overlay::vtep_mac(c_.address);
  for (const Claim& cl : state_.claims) n.blocks.push_back(cl.block);
  std::sort(n.blocks.begin(), n.blocks.end());
  return n;
}

void Agent::save_state() {
  state_.node = c_.node;
  state_.save(state_path_);
  ++generation_;
  dirty_ = true;
  cv_.notify_all();
}

void Agent::start() {
  ensure_dir(c_.state_dir, 0700);
  {
    std::lock_guard lk(mu_);
    state_ = ClaimState::load(state_path_);
    if (!state_.node.empty() && state_.node != c_.node) {
      // Claims are etcd's property of a node name: a renamed host gets none of the old ones.
      spdlog::warn("{} holds claims of node {}, not {}: starting without them", state_path_,
                   state_.node, c_.node);
      state_ = ClaimState{};
    }
    state_.node = c_.node;
  }
  client_ = std::make_unique<etcd::Client>(etcd::Options::from(c_));
  listen_fd_ = control::listen(c_.agent_socket);
  session_ = std::thread([this] { session_loop(); });
  watcher_ = std::thread([this] { watch_loop(); });
  sinker_ = std::thread([this] { sink_loop(); });
}

json Agent::op_blocks(const json& req) {
  Prefix range = range_of(req);
  int len = block_len_of(req, range);
  std::lock_guard lk(mu_);
  std::vector<Prefix> out;
  for (const Prefix& b : state_.blocks_in(range)) {
    if (b.len() == len) out.push_back(b);
  }
  return {{"ok", true}, {"blocks", prefixes_json(out)}};
}

Prefix Agent::claim_new(etcd::Client& client, const Prefix& range, int len) {
  std::string root = c_.key("blocks/" + prefix_id(range) + "/");
  for (int round = 0; round < 4; ++round) {
    etcd::Range existing = client.get_prefix(root);
    std::set<Prefix> taken_same;      // blocks of this size
    std::vector<Prefix> taken_other;  // any other size (a range's blockSize changed)
    for (const auto& kv : existing.kvs) {
      auto cl = claim_of_key(kv.key, c_.key("blocks/"));
      if (!cl) continue;
      if (kv.value == c_.node) {
        // Ours in etcd but not in our state (a lost state dir): take it back first.
        std::lock_guard lk(mu_);
        bool known =
            std::find(state_.claims.begin(), state_.claims.end(), *cl) != state_.claims.end();
        bool releasing = std::find(state_.releasing.begin(), state_.releasing.end(), *cl) !=
                         state_.releasing.end();
        if (!known && !releasing && cl->block.len() == len) return cl->block;
      }
      if (cl->block.len() == len) {
        taken_same.insert(cl->block);
      } else {
        taken_other.push_back(cl->block);
      }
    }
    uint64_t count = block_count(range, len);
    // Each node starts looking at its own place in the range, so that hosts claiming at the
    // same moment rarely want the same block.
    uint64_t start = std::hash<std::string>{}(c_.node) % count;
    int attempts = 0;
    for (uint64_t i = 0; i < count; ++i) {
      Prefix cand = nth_block(range, len, (start + i) % count);
      if (taken_same.contains(cand)) continue;
      bool overlaps = std::any_of(taken_other.begin(), taken_other.end(),
                                  [&](const Prefix& t) { return t.overlaps(cand); });
      if (overlaps) continue;
      if (client.create(block_key({range, cand}), c_.node)) return cand;
      taken_same.insert(cand);
      if (++attempts >= 16) break;  // busy range: read it again
    }
    if (attempts < 16) break;
  }
  throw Error(kErrNotAvailable, "no free address block",
              "every /" + std::to_string(len) + " of " + range.str() + " is claimed");
}

json Agent::op_claim(const json& req) {
  Prefix range = range_of(req);
  int len = block_len_of(req, range);
  std::set<Prefix> have;
  if (const json* h = get_array(req, "have", "request")) {
    for (const json& b : *h) {
      auto p = b.is_string() ? Prefix::parse(b.get<std::string>()) : std::nullopt;
      if (!p) throw_config("request.have must list CIDRs");
      have.insert(p->network());
    }
  }
  std::lock_guard claim_lock(claim_mu_);
  {
    // The caller's view is stale (another plugin process claimed meanwhile): give it what we
    // hold before claiming more.
    std::lock_guard lk(mu_);
    std::vector<Prefix> held;
    for (const Prefix& b : state_.blocks_in(range)) {
      if (b.len() == len) held.push_back(b);
    }
    bool stale =
        std::any_of(held.begin(), held.end(), [&](const Prefix& b) { return !have.contains(b); });
    if (stale) return {{"ok", true}, {"blocks", prefixes_json(held)}};
  }
  Prefix block = claim_new(*client_, range, len);
  std::lock_guard lk(mu_);
  state_.claims.push_back({range, block});
  save_state();
  spdlog::info("claimed {} of {}", block.str(), range.str());
  std::vector<Prefix> held;
  for (const Prefix& b : state_.blocks_in(range)) {
    if (b.len() == len) held.push_back(b);
  }
  return {{"ok", true}, {"block", block.str()}, {"blocks", prefixes_json(held)}};
}

json Agent::op_release(const json& req) {
  Prefix range = range_of(req);
  auto b = get_string(req, "block", "request");
  auto block = b ? Prefix::parse(*b) : std::nullopt;
  if (!block) throw_config("request.block must be a CIDR");
  Claim cl{range, block->network()};
  std::lock_guard claim_lock(claim_mu_);
  {
    std::lock_guard lk(mu_);
    auto it = std::find(state_.claims.begin(), state_.claims.end(), cl);
    if (it == state_.claims.end()) return {{"ok", true}, {"released", false}};
    state_.claims.erase(it);
    state_.releasing.push_back(cl);
    save_state();
  }
  spdlog::info("releasing {} of {}", cl.block.str(), cl.range.str());
  try {
    client_->delete_if_value(block_key(cl), c_.node);
  } catch (const etcd::Unavailable& e) {
    spdlog::warn("etcd is away; {} is released when it is back: {}", cl.block.str(), e.what());
    return {{"ok", true}, {"released", true}, {"pending", true}};
  }
  std::lock_guard lk(mu_);
  std::erase(state_.releasing, cl);
  state_.save(state_path_);
  return {{"ok", true}, {"released", true}, {"pending", false}};
}

json Agent::op_can_claim(const json& req) {
  Prefix range = range_of(req);
  int len = block_len_of(req, range);
  etcd::Range existing = client_->get_prefix(c_.key("blocks/" + prefix_id(range) + "/"));
  uint64_t count = block_count(range, len);
  // Counting is enough while every claim of the range has this size (the normal case).
  uint64_t taken = 0;
  for (const auto& kv : existing.kvs) {
    if (auto cl = claim_of_key(kv.key, c_.key("blocks/"))) {
      taken += cl->block.len() == len ? 1 : block_count(cl->block, len);
    }
  }
  return {{"ok", true}, {"free", taken < count}};
}

json Agent::op_status() {
  std::lock_guard lk(mu_);
  json peers = json::array();
  for (const NodeRecord& p : peers_) peers.push_back(node_to_json(p));
  return {{"ok", true},
          {"node", c_.node},
          {"address", c_.address.str()},
          {"connected", connected_},
          {"lease", std::to_string(lease_)},
          {"claims", claims_json(state_.claims)},
          {"releasing", claims_json(state_.releasing)},
          {"peers", peers}};
}

json Agent::handle(const json& req) {
  try {
    std::string op = req.is_object() ? req.value("op", "") : "";
    if (op == "ping") return {{"ok", true}, {"node", c_.node}};
    if (op == "blocks") return op_blocks(req);
    if (op == "claim") return op_claim(req);
    if (op == "release") return op_release(req);
    if (op == "can_claim") return op_can_claim(req);
    if (op == "status") return op_status();
    if (op == "peers") {
      std::lock_guard lk(mu_);
      json peers = json::array();
      for (const NodeRecord& p : peers_) peers.push_back(node_to_json(p));
      return {{"ok", true}, {"peers", peers}};
    }
    if (op == "resync") {
      std::lock_guard lk(mu_);
      resync_requested_ = true;
      cv_.notify_all();
      return {{"ok", true}};
    }
    return control::error_reply(kErrInvalidConfig, "unknown op \"" + op + "\"");
  } catch (const Error& e) {
    return control::error_reply(e.code(), e.what());
  } catch (const std::exception& e) {
    return control::error_reply(kErrInternal, e.what());
  }
}

void Agent::reconcile(etcd::Client& client) {
  // Claims and releases of the control thread wait meanwhile: the comparison stays exact.
  std::lock_guard claim_lock(claim_mu_);
  std::string root = c_.key("blocks/");
  etcd::Range all = client.get_prefix(root);
  std::map<std::string, std::string> owner;  // key -> node
  for (const auto& kv : all.kvs) owner[kv.key] = kv.value;
  std::vector<Claim> claims, releasing;
  {
    std::lock_guard lk(mu_);
    claims = state_.claims;
    releasing = state_.releasing;
  }
  auto has = [](const std::vector<Claim>& v, const Claim& c) {
    return std::find(v.begin(), v.end(), c) != v.end();
  };
  // Ours in etcd, unknown here: the state dir was lost or is new; same node, same blocks.
  for (const auto& kv : all.kvs) {
    if (kv.value != c_.node) continue;
    auto cl = claim_of_key(kv.key, root);
    if (!cl || has(claims, *cl) || has(releasing, *cl)) continue;
    spdlog::info("etcd says {} of {} is ours: keeping it", cl->block.str(), cl->range.str());
    claims.push_back(*cl);
  }
  // Ours here, missing in etcd (etcd lost its data): claim again; held by another: not ours.
  for (auto it = claims.begin(); it != claims.end();) {
    std::string key = block_key(*it);
    auto o = owner.find(key);
    bool ours = o != owner.end() && o->second == c_.node;
    if (!ours && o == owner.end()) ours = client.create(key, c_.node);
    if (!ours) {
      spdlog::error("block {} of {} is held by another node in etcd; dropping it", it->block.str(),
                    it->range.str());
      it = claims.erase(it);
    } else {
      ++it;
    }
  }
  // Releases that etcd has not seen yet.
  for (const Claim& cl : releasing) client.delete_if_value(block_key(cl), c_.node);
  std::lock_guard lk(mu_);
  if (claims != state_.claims || !state_.releasing.empty()) {
    state_.claims = claims;
    state_.releasing.clear();
    save_state();
  }
  reconciled_ = true;
}

bool Agent::keep_lease(etcd::Client& client, int64_t& lease, SessionTimer& t) {
  if (lease == 0) {
    lease = client.lease_grant(c_.lease_ttl);
    std::lock_guard lk(mu_);
    lease_ = lease;
    dirty_ = true;
    t.next_keepalive = std::chrono::steady_clock::now() + t.keepalive;
  } else if (std::chrono::steady_clock::now() >= t.next_keepalive) {
    if (client.lease_keepalive(lease) == 0) {
      spdlog::warn("node lease {} expired; publishing again under a new one", lease);
      std::lock_guard lk(mu_);
      lease_ = 0;
      return false;
    }
    t.next_keepalive = std::chrono::steady_clock::now() + t.keepalive;
  }
  return true;
}

bool Agent::publish_self(etcd::Client& client, int64_t lease) {
  std::string record;
  uint64_t gen = 0;
  bool dirty;
  {
    std::lock_guard lk(mu_);
    dirty = dirty_;
    gen = generation_;
    record = node_to_json(self_record()).dump();
  }
  if (!dirty) return true;
  try {
    client.put(node_key(), record, lease);
  } catch (const etcd::Refused& e) {
    if (e.grpc_code() != 5) throw;
    std::lock_guard lk(mu_);
    lease_ = 0;  // the lease expired between keepalive and put
    return false;
  }
  std::lock_guard lk(mu_);
  if (generation_ == gen) dirty_ = false;
  return true;
}

void Agent::finish_releases(etcd::Client& client) {
  // Releases that found etcd away (op_release keeps them in state_.releasing).
  std::lock_guard claim_lock(claim_mu_);
  std::vector<Claim> releasing;
  {
    std::lock_guard lk(mu_);
    releasing = state_.releasing;
  }
  for (const Claim& cl : releasing) {
    client.delete_if_value(block_key(cl), c_.node);
    std::lock_guard lk(mu_);
    std::erase(state_.releasing, cl);
    state_.save(state_path_);
  }
}

void Agent::session_loop() {
  etcd::Client client(etcd::Options::from(c_));
  SessionTimer timer{std::chrono::milliseconds(std::max(500, c_.lease_ttl * 1000 / 3)),
                     Clock::now()};
  int backoff_ms = 200;
  while (!stopping_) {
    try {
      bool need_reconcile;
      int64_t lease;
      {
        std::lock_guard lk(mu_);
        need_reconcile = !reconciled_;
        lease = lease_;
      }
      if (need_reconcile) reconcile(client);
      if (!keep_lease(client, lease, timer)) continue;
      if (!publish_self(client, lease)) continue;
      finish_releases(client);
      {
        std::unique_lock lk(mu_);
        if (!connected_) spdlog::info("etcd reached at {}", client.endpoint());
        connected_ = true;
        backoff_ms = 200;
        cv_.wait_until(lk, timer.next_keepalive, [&] { return stopping_.load() || dirty_; });
      }
    } catch (const std::exception& e) {
      {
        std::lock_guard lk(mu_);
        if (connected_) spdlog::warn("etcd lost: {}", e.what());
        connected_ = false;
        reconciled_ = false;
      }
      nap(stopping_, backoff_ms);
      backoff_ms = std::min(backoff_ms * 2, 2000);
    }
  }
}

void Agent::watch_loop() {
  etcd::Mirror mirror(etcd::Options::from(c_), c_.key("nodes/"));
  mirror.run(
      stopping_,
      [this](const etcd::Mirror::Snapshot& snap) {
        std::vector<NodeRecord> peers;
        for (const auto& [key, kv] : snap) {
          auto n = node_from_json(kv.value);
          if (!n) {
            spdlog::warn("skipping the unreadable node record {}", key);
            continue;
          }
          peers.push_back(std::move(*n));
        }
        std::sort(peers.begin(), peers.end(),
                  [](const NodeRecord& a, const NodeRecord& b) { return a.node < b.node; });
        std::lock_guard lk(mu_);
        peers_ = std::move(peers);
        peers_changed_ = true;
        cv_.notify_all();
      },
      [](bool up) {
        if (up) {
          spdlog::info("watching the cluster's nodes");
        } else {
          spdlog::warn("node watch lost; keeping the last view until etcd is back");
        }
      },
      1000);
}

void Agent::sink_loop() {
  auto next_resync = Clock::now() + std::chrono::seconds(o_.resync_s > 0 ? o_.resync_s : 3600);
  bool seen_any = false;
  while (!stopping_) {
    std::vector<NodeRecord> peers;
    {
      std::unique_lock lk(mu_);
      cv_.wait_until(lk, next_resync,
                     [&] { return stopping_.load() || peers_changed_ || resync_requested_; });
      if (stopping_) return;
      bool timed = Clock::now() >= next_resync;
      if (!peers_changed_ && !resync_requested_ && !(timed && o_.resync_s > 0 && seen_any)) {
        next_resync = Clock::now() + std::chrono::seconds(o_.resync_s > 0 ? o_.resync_s : 3600);
        continue;
      }
      seen_any = seen_any || peers_changed_;
      peers_changed_ = false;
      resync_requested_ = false;
      peers = peers_;
      next_resync = Clock::now() + std::chrono::seconds(o_.resync_s > 0 ? o_.resync_s : 3600);
    }
    for (auto& sink : sinks_) {
      try {
        sink->sync(peers, c_.node);
      } catch (const std::exception& e) {
        spdlog::error("{}: {}", sink->name(), e.what());
      }
    }
  }
}

namespace {

// A control connection and what it sent that is not a whole line yet.
struct Conn {
  Fd fd;
  std::string in;
};

void accept_connections(int listen_fd, std::vector<Conn>& conns) {
  for (;;) {
    Fd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) break;
    if (!control::peer_trusted(fd.get())) {
      spdlog::warn("refusing a control connection from an untrusted user");
      continue;
    }
    conns.push_back({std::move(fd), {}});
  }
}

void send_all(int fd, const std::string& out) {
  for (size_t off = 0; off < out.size();) {
    ssize_t w = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;
    off += static_cast<size_t>(w);
  }
}

// Reads what the connection has and answers every whole line; false when it is to be closed
// (closed by the peer, or over 1 MiB without a line break).
bool serve_connection(Conn& c, const std::function<json(const json&)>& handle) {
  char buf[4096];
  ssize_t r = ::recv(c.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
  if (r <= 0) return r < 0 && (errno == EAGAIN || errno == EINTR);
  c.in.append(buf, static_cast<size_t>(r));
  for (size_t nl; (nl = c.in.find('\n')) != std::string::npos;) {
    json req = parse_bounded(std::string_view(c.in).substr(0, nl));
    c.in.erase(0, nl + 1);
    json reply = req.is_discarded() ? control::error_reply(kErrDecode, "not JSON") : handle(req);
    send_all(c.fd.get(), reply.dump() + "\n");
  }
  return c.in.size() <= (1 << 20);
}

}  // namespace

void Agent::run(const std::atomic<bool>& stop, bool revoke_on_exit) {
  std::vector<Conn> conns;
  const auto handler = [this](const json& req) { return handle(req); };
  while (!stop.load()) {
    std::vector<pollfd> fds;
    fds.push_back({listen_fd_.get(), POLLIN, 0});
    for (const Conn& c : conns) fds.push_back({c.fd.get(), POLLIN, 0});
    int n = ::poll(fds.data(), fds.size(), 200);
    if (n < 0 && errno != EINTR) throw_errno("poll");
    if (n <= 0) continue;
    if (fds[0].revents & POLLIN) accept_connections(listen_fd_.get(), conns);
    std::vector<size_t> closed;
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (!serve_connection(conns[i - 1], handler)) closed.push_back(i - 1);
    }
    for (auto it = closed.rbegin(); it != closed.rend(); ++it) conns.erase(conns.begin() + *it);
  }
  shut_down(revoke_on_exit);
}

void Agent::shut_down(bool revoke_on_exit) {
  ::unlink(c_.agent_socket.c_str());
  stopping_ = true;
  cv_.notify_all();
  for (std::thread* t : {&session_, &watcher_, &sinker_}) {
    if (t->joinable()) t->join();
  }
  int64_t lease;
  {
    std::lock_guard lk(mu_);
    lease = lease_;
  }
  if (revoke_on_exit && lease) {
    try {
      etcd::Options o = etcd::Options::from(c_);
      o.timeout_ms = std::min(o.timeout_ms, 1000);
      etcd::Client(o).lease_revoke(lease);
    } catch (const std::exception& e) {
      spdlog::warn("cannot revoke the node lease (it expires in {} s): {}", c_.lease_ttl, e.what());
    }
  }
}

}  // namespace cni::agent
