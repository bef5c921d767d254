#include "plugins/dns-sidecar/cluster_sync.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>

#include "common/error.h"
#include "common/etcd.h"
#include "common/netconf.h"

namespace cni::dns {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRetry = std::chrono::seconds(1);

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    auto slash = s.find('/', start);
    out.push_back(s.substr(start, slash - start));
    if (slash == std::string::npos) return out;
    start = slash + 1;
  }
}

// A remote record from one etcd key/value; nullopt (logged) when it is not a valid record.
std::optional<Record> parse_remote(const std::string& prefix, const etcd::KeyValue& kv) {
  auto key = parse_cluster_key(prefix, kv.key);
  if (!key) return std::nullopt;
  try {
    Record r = Record::from_json(parse_bounded(kv.value));
    r.key = *key;  // the key is what etcd deletes by: it wins over the value's copy
    r.gateways.clear();
    r.net.port.reset();
    return r;
  } catch (const std::exception& e) {
    spdlog::warn("ignoring cluster record {}: {}", kv.key, e.what());
    return std::nullopt;
  }
}

}  // namespace

std::string cluster_key(const std::string& prefix, const AttachmentKey& k) {
  return prefix + k.network + "/" + k.node + "/" + k.container_id + "/" + k.ifname;
}

std::optional<AttachmentKey> parse_cluster_key(const std::string& prefix, const std::string& key) {
  if (!key.starts_with(prefix)) return std::nullopt;
  auto parts = split(key.substr(prefix.size()));
  if (parts.size() != 4) return std::nullopt;
  for (const auto& p : parts) {
    if (p.empty()) return std::nullopt;
  }
  return AttachmentKey{{parts[0], parts[2], parts[3]}, parts[1]};
}

json published_json(const Record& r) {
  json j = r.to_json();
  // Container-scoped aliases answer only that container; gateways, the port and per-container
  // upstreams describe this host.
  for (const char* local : {"containerAliases", "gateways", "upstreams", "port", "cluster"}) {
    j.erase(local);
  }
  return j;
}

ClusterSync::ClusterSync(cluster::ClusterConfig config, int ttl)
    : config_(std::move(config)),
      ttl_(ttl > 0 ? ttl : config_.lease_ttl),
      prefix_(config_.key("dns/")),
      event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!event_fd_) throw_errno("eventfd");
}

ClusterSync::~ClusterSync() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  if (watcher_.joinable()) watcher_.join();
}

void ClusterSync::start(const std::vector<Record>& local) {
  {
    std::lock_guard lk(mu_);
    for (const auto& r : local) {
      if (r.cluster) desired_[cluster_key(prefix_, r.key)] = published_json(r).dump();
    }
  }
  publisher_ = std::thread([this] { publisher(); });
  watcher_ = std::thread([this] { watcher(); });
}

void ClusterSync::publish(const Record& r, uint64_t ticket) {
  Op op{true, cluster_key(prefix_, r.key), published_json(r).dump(), ticket};
  {
    std::lock_guard lk(mu_);
    desired_[op.key] = op.value;
    ops_.push_back(std::move(op));
  }
  cv_.notify_all();
}

void ClusterSync::unpublish(const AttachmentKey& key, uint64_t ticket) {
  Op op{false, cluster_key(prefix_, key), "", ticket};
  {
    std::lock_guard lk(mu_);
    desired_.erase(op.key);
    ops_.push_back(std::move(op));
  }
  cv_.notify_all();
}

void ClusterSync::post(ClusterUpdate u) {
  {
    std::lock_guard lk(mu_);
    updates_.push_back(std::move(u));
  }
  uint64_t one = 1;
  ssize_t ignored = ::write(event_fd_.get(), &one, sizeof(one));
  (void)ignored;
}

std::vector<ClusterUpdate> ClusterSync::take() {
  uint64_t n = 0;
  ssize_t ignored = ::read(event_fd_.get(), &n, sizeof(n));
  (void)ignored;
  std::vector<ClusterUpdate> out;
  std::lock_guard lk(mu_);
  out.swap(updates_);
  return out;
}

struct ClusterSync::PublisherState {
  etcd::Client client;
  Clock::time_point next_keepalive = Clock::now();
  Clock::time_point next_retry = Clock::now();
};

void ClusterSync::establish(PublisherState& s) {
  if (lease_ != 0 && s.client.lease_keepalive(lease_) <= 0) lease_ = 0;
  if (lease_ == 0) lease_ = s.client.lease_grant(ttl_);
  std::map<std::string, std::string> want;
  {
    std::lock_guard lk(mu_);
    want = desired_;
  }
  for (const auto& [k, v] : want) s.client.put(k, v, lease_);
  // What an earlier run of this node left (its lease may still be alive): not ours any more.
  for (const auto& kv : s.client.get_prefix(prefix_).kvs) {
    auto key = parse_cluster_key(prefix_, kv.key);
    if (key && key->node == config_.node && !want.count(kv.key)) s.client.del(kv.key);
  }
  if (!connected_)
    spdlog::info("cluster: {} records published under lease {}", want.size(), lease_);
  connected_ = true;
  s.next_keepalive = Clock::now() + std::chrono::milliseconds(ttl_ * 1000 / 3);
}

bool ClusterSync::reconnect(PublisherState& s, std::deque<Op>& ops,
                            std::chrono::steady_clock::time_point now) {
  try {
    establish(s);  // writes every desired key: the queued ops are done with it
    for (const auto& op : ops) post({ClusterUpdate::Kind::kDone, {}, {}, op.ticket, true, ""});
    ops.clear();
    return true;
  } catch (const std::exception& e) {
    if (now >= s.next_retry) spdlog::warn("cluster: etcd: {}", e.what());
    s.next_retry = Clock::now() + kRetry;
    for (const auto& op : ops) {
      post({ClusterUpdate::Kind::kDone,
            {},
            {},
            op.ticket,
            false,
            std::string("etcd is unreachable (") + e.what() + "); published once it is back"});
    }
    return false;
  }
}

void ClusterSync::apply(const std::deque<Op>& ops, PublisherState& s) {
  for (const auto& op : ops) {
    try {
      if (op.put) {
        s.client.put(op.key, op.value, lease_);
      } else {
        s.client.del(op.key);
      }
      post({ClusterUpdate::Kind::kDone, {}, {}, op.ticket, true, ""});
    } catch (const std::exception& e) {
      // Unreachable, or the lease is gone: establish() writes it (or deletes it) later.
      connected_ = false;
      s.next_retry = Clock::now();
      post({ClusterUpdate::Kind::kDone,
            {},
            {},
            op.ticket,
            false,
            std::string("etcd: ") + e.what() + "; retried in the background"});
    }
  }
}

void ClusterSync::keepalive(PublisherState& s) {
  if (!connected_ || Clock::now() < s.next_keepalive) return;
  try {
    if (s.client.lease_keepalive(lease_) <= 0) {
      spdlog::warn("cluster: lease {} expired; publishing again", lease_);
      lease_ = 0;
      connected_ = false;
      s.next_retry = Clock::now();
    } else {
      s.next_keepalive = Clock::now() + std::chrono::milliseconds(ttl_ * 1000 / 3);
    }
  } catch (const std::exception& e) {
    spdlog::warn("cluster: keepalive: {}", e.what());
    connected_ = false;
    s.next_retry = Clock::now() + kRetry;
  }
}

void ClusterSync::publisher() {
  PublisherState s{etcd::Client(etcd::Options::from(config_))};
  for (;;) {
    std::deque<Op> ops;
    {
      std::unique_lock lk(mu_);
      auto wake = connected_ ? s.next_keepalive : s.next_retry;
      cv_.wait_until(lk, wake, [&] { return stop_.load() || !ops_.empty(); });
      if (stop_) return;
      ops.swap(ops_);
    }
    auto now = Clock::now();
    if (!connected_ && (now >= s.next_retry || !ops.empty())) {
      if (!reconnect(s, ops, now)) continue;
    }
    apply(ops, s);
    keepalive(s);
  }
}

void ClusterSync::watcher() {
  etcd::Client client(etcd::Options::from(config_));
  auto backoff = std::chrono::milliseconds(100);
  while (!stop_) {
    try {
      etcd::Range range = client.get_prefix(prefix_);
      ClusterUpdate snap;
      snap.kind = ClusterUpdate::Kind::kSnapshot;
      for (const auto& kv : range.kvs) {
        auto r = parse_remote(prefix_, kv);
        if (r && r->key.node != config_.node) snap.records.push_back(std::move(*r));
      }
      post(std::move(snap));
      backoff = std::chrono::milliseconds(100);
      client.watch(
          prefix_, range.revision + 1,
          [&](const std::vector<etcd::Event>& events, int64_t) {
            for (const auto& e : events) {
              if (e.deleted) {
                auto key = parse_cluster_key(prefix_, e.kv.key);
                if (key && key->node != config_.node) {
                  post({ClusterUpdate::Kind::kDelete, {}, *key, 0, false, ""});
                }
              } else if (auto r = parse_remote(prefix_, e.kv); r && r->key.node != config_.node) {
                post({ClusterUpdate::Kind::kPut, {std::move(*r)}, {}, 0, false, ""});
              }
            }
            return !stop_.load();
          },
          &stop_);
    } catch (const std::exception& e) {
      spdlog::warn("cluster: watch: {}; reading {} again", e.what(), prefix_);
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, backoff, [&] { return stop_.load(); });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
  }
}

}  // namespace cni::dns
