#pragma once
// The daemon's side of the cluster (issue 12, WeaveDNS): publishes this node's registrations in
// etcd under one lease it keeps alive, and mirrors every other node's. All etcd traffic runs on
// two threads of its own (a Client is blocking), so the DNS loop never waits on etcd: the loop
// hands over publish/unpublish requests, and takes back, through an eventfd, the remote changes
// and the outcome of each request.
//
// Keys: <prefix>/dns/<network>/<node>/<containerID>/<ifname>, values the published part of the
// record (names, aliases, addresses, network settings; container-scoped aliases, gateways and
// per-container upstreams stay local). A dead daemon's keys go with its lease (leaseTTL); a
// restarted one republishes the state dir's records under a new lease and deletes the keys of
// its node it no longer holds. The watch thread reads the prefix, then watches from the next
// revision; when the stream breaks it reads again and the loop replaces the remote view with
// that snapshot, so nothing stale or duplicate survives a reconnect.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/cluster.h"
#include "common/files.h"
#include "plugins/dns-sidecar/registry.h"

namespace cni::dns {

struct ClusterUpdate {
  enum class Kind {
    kSnapshot,  // `records`: every remote record (the remote view becomes exactly these)
    kPut,       // `records[0]`: one remote record added or changed
    kDelete,    // `key`: one remote record gone
    kDone,      // the request `ticket` finished: `published`, else `error` says why not
  };
  Kind kind = Kind::kPut;
  std::vector<Record> records;
  AttachmentKey key;
  uint64_t ticket = 0;
  bool published = false;
  std::string error;
};

// The etcd key of a record, and a record's key back from an etcd key (nullopt: not ours).
std::string cluster_key(const std::string& prefix, const AttachmentKey& k);
std::optional<AttachmentKey> parse_cluster_key(const std::string& prefix, const std::string& key);
// The published form: the record without what stays local.
json published_json(const Record& r);

class ClusterSync {
 public:
  // `ttl` overrides the cluster file's leaseTTL when > 0.
  ClusterSync(cluster::ClusterConfig config, int ttl);
  ~ClusterSync();
  ClusterSync(const ClusterSync&) = delete;
  ClusterSync& operator=(const ClusterSync&) = delete;

  // Starts both threads with this node's records (what the state dir holds).
  void start(const std::vector<Record>& local);
  // Loop thread: publish or withdraw one local record; a kDone with `ticket` follows (at once
  // when etcd is known to be down, else after one etcd request, at most timeoutMs).
  void publish(const Record& r, uint64_t ticket);
  void unpublish(const AttachmentKey& key, uint64_t ticket);
  // Loop thread: readable when updates wait; take() drains them and the eventfd.
  int fd() const { return event_fd_.get(); }
  std::vector<ClusterUpdate> take();
  bool connected() const { return connected_.load(); }
  const std::string& node() const { return config_.node; }
  int ttl() const { return ttl_; }

 private:
  struct Op {
    bool put = true;
    std::string key;
    std::string value;
    uint64_t ticket = 0;
  };
  struct PublisherState;  // the publisher thread's etcd client and deadlines
  void post(ClusterUpdate u);
  void publisher();
  void watcher();
  // Publisher thread, etcd reachable or not: a lease, every desired key written, our node's
  // other keys deleted. Throws when etcd does not answer.
  void establish(PublisherState& s);
  // Publisher thread, not connected: establish(), which does the queued `ops` too (they are
  // answered and cleared). False when etcd is still unreachable (they are answered as failed;
  // the failure is logged when the retry was due at `now`).
  bool reconnect(PublisherState& s, std::deque<Op>& ops, std::chrono::steady_clock::time_point now);
  // Publisher thread, connected: each op as one request; a failure disconnects.
  void apply(const std::deque<Op>& ops, PublisherState& s);
  // Publisher thread, connected: the lease kept alive when it is due.
  void keepalive(PublisherState& s);

  cluster::ClusterConfig config_;
  int ttl_;
  std::string prefix_;  // <prefix>/dns/
  Fd event_fd_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};

  std::mutex mu_;  // guards ops_, desired_ (publisher side) and updates_ (loop side)
  std::condition_variable cv_;
  std::deque<Op> ops_;
  std::map<std::string, std::string> desired_;  // etcd key -> value of every local record
  std::vector<ClusterUpdate> updates_;

  int64_t lease_ = 0;  // publisher thread only
  std::thread publisher_;
  std::thread watcher_;
};

}  // namespace cni::dns
