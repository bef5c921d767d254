#pragma once
// An etcd v3 client over etcd's JSON gateway (etcd 3.4: POST /v3/kv/range, /v3/kv/put,
// /v3/kv/txn, /v3/kv/deleterange, /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke and
// the streaming /v3/watch; keys and values travel as base64). HTTP is libcurl's, loaded with
// dlopen("libcurl.so.4") at the first request: a plugin that never talks to etcd never loads
// it, and none pays the start-up cost of linking it.
//
// Every request has one time budget (Options::timeout_ms) across all endpoints: an endpoint
// that cannot be reached is skipped for the next one (failover), and the endpoint that
// answered is tried first next time. When none answers in the budget the request throws
// Unavailable, which is CNI code 11 ("try again later"), so a plugin can let it through.
//
// A Client is not thread-safe (it owns one libcurl handle, which keeps the connection alive
// between requests): use one per thread.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/cluster.h"
#include "common/error.h"

namespace cni::etcd {

using json = nlohmann::json;

// No endpoint answered within the budget (or libcurl is not installed): code 11.
class Unavailable : public Error {
 public:
  explicit Unavailable(std::string details)
      : Error(kErrTryAgainLater, "etcd is unreachable, try again later", std::move(details)) {}
};

// etcd answered with an error (gRPC status `grpc_code`, e.g. 5 = not found).
class Refused : public Error {
 public:
  Refused(int grpc_code, std::string details)
      : Error(kErrInternal, "etcd refused the request", std::move(details)),
        grpc_code_(grpc_code) {}
  int grpc_code() const { return grpc_code_; }

 private:
  int grpc_code_;
};

// A watch's start revision has been compacted away: read the keys again and watch from the
// revision of that read.
class Compacted : public Error {
 public:
  explicit Compacted(int64_t compact_revision)
      : Error(kErrTryAgainLater, "etcd watch revision compacted",
              "compacted at " + std::to_string(compact_revision)),
        compact_revision_(compact_revision) {}
  int64_t compact_revision() const { return compact_revision_; }

 private:
  int64_t compact_revision_;
};

struct KeyValue {
  std::string key{};
  std::string value{};
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  bool operator==(const KeyValue&) const = default;
};

struct Range {
  std::vector<KeyValue> kvs;
  int64_t revision = 0;  // the store's revision the read saw
};

struct Event {
  bool deleted = false;  // false: put (created or modified)
  KeyValue kv{};         // for a delete only key and mod_revision are set
};

struct Options {
  std::vector<std::string> endpoints;  // "http://host:port", no trailing '/'
  std::optional<cluster::Tls> tls;
  int timeout_ms = cluster::kDefaultTimeoutMs;  // one request, across every endpoint tried
  int connect_timeout_ms = 500;                 // one endpoint's TCP (and TLS) connect

  static Options from(const cluster::ClusterConfig& c);
};

// The range_end that selects every key starting with `prefix` (etcd's "prefix + 1").
std::string prefix_end(std::string_view prefix);

class Client {
 public:
  explicit Client(Options options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  std::optional<KeyValue> get(const std::string& key);
  Range get_prefix(const std::string& prefix);
  // Returns the revision of the write. lease 0: none.
  int64_t put(const std::string& key, const std::string& value, int64_t lease = 0);
  // One transaction: writes `key` only when it does not exist (create_revision == 0). Returns
  // false when it exists, with its current value in `*existing` when given.
  bool create(const std::string& key, const std::string& value, int64_t lease = 0,
              KeyValue* existing = nullptr);
  // One transaction: deletes `key` only while its value is `value`. False when it is absent or
  // holds something else.
  bool delete_if_value(const std::string& key, const std::string& value);
  int64_t del(const std::string& key);  // keys deleted (0 or 1)
  int64_t del_prefix(const std::string& prefix);

  // Returns the lease ID.
  int64_t lease_grant(int ttl_seconds);
  // Renews the lease once; returns its TTL in seconds, 0 when it has expired or never existed
  // (the holder must grant a new one and write its keys again).
  int64_t lease_keepalive(int64_t id);
  // Revokes the lease and deletes its keys; an unknown lease is not an error.
  void lease_revoke(int64_t id);

  // Streams the changes of every key under `prefix` from `start_revision` (inclusive), calling
  // on_events(events, revision) for each batch, until on_events returns false or *stop becomes
  // true (checked about every 100 ms). Throws Compacted when start_revision is gone, and
  // Unavailable when the stream cannot be opened or breaks (etcd restarted, connection lost:
  // TCP keepalive notices a silent peer after about 10 s).
  void watch(const std::string& prefix, int64_t start_revision,
             const std::function<bool(const std::vector<Event>&, int64_t)>& on_events,
             const std::atomic<bool>* stop = nullptr);

  // The endpoint that answered the last request (the first endpoint before any).
  const std::string& endpoint() const;

  // A raw gateway call: POST `path` (e.g. "/v3/kv/range") with `body`; the decoded reply.
  json call(const std::string& path, const json& body);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A live copy of every key under a prefix: reads the prefix, then watches from the next
// revision; when the watch breaks (etcd restarted, compaction) it reads the prefix again and
// the copy is replaced, so no stale or duplicate key survives a reconnect.
class Mirror {
 public:
  using Snapshot = std::map<std::string, KeyValue>;

  Mirror(Options options, std::string prefix);

  // Runs in the calling thread until *stop. on_change(snapshot) is called after the first read,
  // after every change, and after a re-read that found something different. on_connected(bool)
  // (optional) reports when etcd becomes reachable or unreachable; while unreachable, the last
  // snapshot stands and reads are retried with a back-off of 100 ms doubling to `max_retry_ms`.
  void run(const std::atomic<bool>& stop, const std::function<void(const Snapshot&)>& on_change,
           const std::function<void(bool)>& on_connected = {}, int max_retry_ms = 1000);

 private:
  Options options_;
  std::string prefix_;
};

}  // namespace cni::etcd
