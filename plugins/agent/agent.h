#pragma once
// tether-agent: the per-host cluster daemon (issue 11). One per host, serving every network of
// the host's cluster file:
//   - publishes this node (name, underlay address, VTEP MAC, blocks) under an etcd lease that it
//     keeps alive; when etcd restarts it reconnects, grants a new lease if the old one expired
//     and publishes again;
//   - claims, keeps and releases address blocks for host-local (create-if-absent transactions;
//     claims persisted in <stateDir>/claims.json too, and re-asserted at start);
//   - watches every node's record and hands the peer set to its PeerSinks (peers.h);
//   - serves the line-JSON control socket (common/control.h) at the cluster file's agentSocket.
// Control ops (request {"op": ...}; reply {"ok": true, ...} or {"ok": false, "code", "error"}):
//   ping                              {"node"}
//   blocks   {"range", "blockSize"}   {"blocks": [...]} this node's blocks of that range,
//                                     from local state: no etcd round trip, works while etcd is
//                                     away
//   claim    {"range", "blockSize", "have": [...]}
//                                     one more block unless a held one is missing from "have"
//                                     (then {"blocks"} at once); {"block", "blocks"}. Code 50:
//                                     the range has no free block; 11: etcd unreachable
//   release  {"range", "block"}       gives a block back; done locally at once, in etcd now or
//                                     when etcd is back ({"pending": true})
//   can_claim {"range", "blockSize"}  {"free": bool} whether a block could be claimed now
//   peers                             {"peers": [NodeRecord...]} the last view of etcd
//   status                            {"node", "connected", "lease", "claims", "releasing", ...}
//   resync                            calls every sink again with the last peer set
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/cluster.h"
#include "common/etcd.h"
#include "common/files.h"
#include "plugins/agent/blocks.h"
#include "plugins/agent/peers.h"

namespace cni::agent {

using json = nlohmann::json;

inline constexpr const char* kWho = "tether-agent";

struct AgentOptions {
  int resync_s = 30;  // PeerSink::sync with the unchanged set this often; 0: never
};

class Agent {
 public:
  Agent(cluster::ClusterConfig c, AgentOptions o = {});
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Before start(): sinks are called from the watch thread.
  void add_sink(std::unique_ptr<PeerSink> sink);

  // Loads the claims and binds the control socket; the caller holds the agent's lock. Starts
  // the etcd session and the watch threads.
  void start();
  // Serves the control socket until *stop; then ends the threads and revokes the node lease
  // when `revoke_on_exit` (a clean stop unpublishes at once; a crash waits for the TTL).
  void run(const std::atomic<bool>& stop, bool revoke_on_exit = true);

  // One control request (run() calls it for every line; tests call it directly).
  json handle(const json& request);

  const cluster::ClusterConfig& cluster() const { return c_; }

 private:
  json op_blocks(const json& req);
  json op_claim(const json& req);
  json op_release(const json& req);
  json op_can_claim(const json& req);
  json op_status();

  std::string block_key(const Claim& c) const;
  std::string node_key() const;
  NodeRecord self_record() const;  // needs mu_
  void save_state();               // needs mu_
  // Claims one free block of `range` in etcd (called without mu_ held).
  Prefix claim_new(etcd::Client& client, const Prefix& range, int block_len);

  // The session thread's keepalive period and next deadline.
  struct SessionTimer {
    std::chrono::milliseconds keepalive;
    std::chrono::steady_clock::time_point next_keepalive;
  };
  void session_loop();
  // session_loop()'s steps; false: the lease is gone, start the round again with a new one.
  bool keep_lease(etcd::Client& client, int64_t& lease, SessionTimer& t);
  bool publish_self(etcd::Client& client, int64_t lease);  // the node record, when dirty
  void finish_releases(etcd::Client& client);
  // run()'s end: the threads stopped and the node lease revoked when `revoke_on_exit`.
  void shut_down(bool revoke_on_exit);
  void reconcile(etcd::Client& client);  // claims in etcd vs local, at every (re)connect
  void watch_loop();
  void sink_loop();  // calls the sinks: on change, on request, every resync interval

  cluster::ClusterConfig c_;
  AgentOptions o_;
  std::string state_path_;
  std::vector<std::unique_ptr<PeerSink>> sinks_;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  ClaimState state_;
  bool dirty_ = true;        // the node record must be written again
  bool connected_ = false;   // the session reached etcd last time it tried
  bool reconciled_ = false;  // claims compared with etcd since the last connect
  int64_t lease_ = 0;
  std::vector<NodeRecord> peers_;
  bool peers_changed_ = false;
  bool resync_requested_ = false;
  uint64_t generation_ = 0;  // bumped by every change of the node record's content

  std::mutex claim_mu_;                   // one claim at a time
  std::unique_ptr<etcd::Client> client_;  // control thread's client (claims, releases)

  Fd listen_fd_;
  std::atomic<bool> stopping_{false};
  std::thread session_;
  std::thread watcher_;
  std::thread sinker_;
};

}  // namespace cni::agent
