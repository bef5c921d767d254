#pragma once
// The daemon's event loop (epoll, one thread): DNS over UDP and TCP on every (gateway, port)
// the registrations name, forwarding to upstream servers, the control socket, the host's
// resolv.conf watch and signals. Every socket is non-blocking; nothing in the loop waits.
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/files.h"
#include "plugins/dns-sidecar/answer.h"
#include "plugins/dns-sidecar/cluster_sync.h"
#include "plugins/dns-sidecar/lookup.h"
#include "plugins/dns-sidecar/registry.h"
#include "plugins/dns-sidecar/upstream.h"

namespace cni::dns {

struct ServerOptions {
  std::string state_dir;
  std::string socket;
  std::string resolv_conf = "/etc/resolv.conf";
  uint16_t port = 53;
  // Exit once no registration is left for this long (the plugin starts the daemon again when
  // it needs one); 0 keeps running, as under systemd.
  int idle_exit_s = 0;
  // The node name records are published under; "" takes the host name (uname).
  std::string node;
  // The cluster file (common/cluster.h): publish local records, serve every node's; its node
  // name replaces `node`. lease_ttl > 0 overrides its leaseTTL.
  std::string cluster_file;
  int lease_ttl = 0;
};

// Something registered with epoll. Each registration gets a fresh token (epoll's data), looked
// up on dispatch, so an event queued for a closed socket never reaches its successor. Retired
// objects are destroyed only after the current batch of events.
class Watch {
 public:
  virtual ~Watch() = default;
  virtual void on_event(uint32_t events) = 0;
  bool retired = false;
  uint64_t token = 0;  // the epoll registration's key; 0 when not registered
};

class TcpConn;
class Forward;
class ControlConn;

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads the registrations, binds the DNS listeners and then the control socket; once it
  // returns, the daemon answers. Throws Error when the control socket cannot be bound.
  void start();
  // Serves until SIGTERM/SIGINT (or idle exit). SIGHUP reloads everything from the state dir.
  void run();
  // One turn of run(): waits at most `max_wait_ms` for events, dispatches them, expires
  // forwards and sweeps idle connections. Returns false once the daemon should stop.
  bool run_once(int max_wait_ms);

  // A failure in one event (a throw from its handler, from a forward's timeout or a sweep) is
  // contained: logged, counted here and in the list reply ("eventFailures"), and the daemon goes
  // on serving every other network. Ending the daemon would end DNS for all of them.
  uint64_t event_failures() const { return event_failures_; }
  // Registers `w` for `events` on `fd`, owned by the server until it is destroyed. For watches
  // from outside the server's own kinds (tests inject a failing handler through it).
  void adopt_watch(int fd, uint32_t events, std::unique_ptr<Watch> w);

  // The control protocol (common/control.h's line JSON), also callable directly by tests.
  // Requests ({"op": ...}):
  //   add   {"record": Record}   register (or replace) an attachment; the reply comes once its
  //                              names resolve and its listeners are bound
  //   del   {"network","containerID","ifname"}
  //   check {"network","containerID","ifname"}   whether the attachment is registered
  //   sync  {"network"}          reload one network's records from the state dir
  //   ping / list
  // Replies: {"ok": true, ...} or {"ok": false, "error": "..."}.
  json handle_control(const json& request);

 private:
  friend class TcpConn;
  friend class Forward;
  friend class ControlConn;
  struct Listener;

  using Clock = std::chrono::steady_clock;

  // The control ops that change the registry; the key a del or check request names.
  json control_add(const json& request);
  json control_del(const json& request);
  AttachmentKey control_key(const json& request) const;

  void add_watch(int fd, uint32_t events, Watch* w);
  void mod_watch(int fd, uint32_t events, Watch* w);
  void retire_token(Watch* w);
  void retire(std::unique_ptr<Watch> w);

  // Every change of the view goes through these two: registry and index in step, O(record).
  void put_record(Record r);
  bool drop_record(const AttachmentKey& key);
  // Makes this node's records of `network` (of all networks: nullopt) exactly `records`.
  void replace_local(const std::optional<std::string>& network, std::vector<Record> records);
  // Opens/closes listeners to match the index. Returns an error text for every listener that
  // could not be bound.
  std::vector<std::string> sync_listeners();
  std::optional<std::string> open_listener(const ListenKey& key);
  void reload_all();

  void on_udp(Listener& l);
  void on_tcp_accept(Listener& l);
  void on_control_accept();
  void on_signal();
  // `client`: the query's source address, whose share of the forwards it counts against.
  void handle_decision(Decision d, const uint8_t* wire, size_t len, Transport t,
                       const ListenKey& key, const IpAddr& client, const sockaddr_storage& from,
                       socklen_t from_len, uint64_t conn_id, std::vector<uint8_t>* udp_reply);
  void start_forward(std::vector<uint8_t> query, std::vector<Upstream> upstreams, Transport t,
                     const ListenKey& key, const IpAddr& client, const sockaddr_storage& from,
                     socklen_t from_len, uint64_t conn_id);
  void finish_forward(uint64_t id, std::vector<uint8_t> reply);
  void deliver_udp(const ListenKey& key, const sockaddr_storage& to, socklen_t to_len,
                   const std::vector<uint8_t>& reply);
  void deliver_tcp(uint64_t conn_id, const std::vector<uint8_t>& reply);
  void expire_forwards(Clock::time_point now);
  void sweep_tcp(Clock::time_point now);
  // At kMaxTcpConns: closes the connection idle longest that waits for no forward; false when
  // every one does.
  bool evict_idlest_conn();
  // Listeners that ran out of fds accept again.
  void resume_accepting();
  int next_timeout_ms(Clock::time_point now) const;
  json list() const;
  template <class F>
  void contained(const char* what, F&& f) noexcept;
  void on_cluster();
  // The request `ticket` of a control connection finished in the cluster thread.
  void finish_request(uint64_t ticket, bool published, const std::string& error);

  ServerOptions opts_;
  RecordStore store_;
  Fd epoll_;
  Fd signal_fd_;
  Fd control_fd_;
  std::unique_ptr<Watch> signal_watch_;
  std::unique_ptr<Watch> control_watch_;
  std::unique_ptr<ResolvConf> resolv_;
  std::unique_ptr<Watch> resolv_watch_;
  Registry registry_;
  Index index_;
  ReplyCache cache_;  // entries expire with their scope's stamp; cleared on host-upstream change
  std::string node_;  // who publishes our local records: the cluster's node name, else hostname
  std::unique_ptr<ClusterSync> cluster_;
  std::unique_ptr<Watch> cluster_watch_;
  std::map<uint64_t, ControlConn*> awaiting_;  // control replies waiting for etcd, by ticket
  std::map<ListenKey, std::unique_ptr<Listener>> listeners_;
  std::map<uint64_t, std::unique_ptr<TcpConn>> conns_;
  std::map<uint64_t, std::unique_ptr<Forward>> forwards_;
  std::map<IpAddr, size_t> forwards_of_;  // in flight per client address (kMaxInflightPerClient)
  std::multimap<Clock::time_point, uint64_t> forward_deadlines_;
  std::vector<std::unique_ptr<Watch>> control_conns_;
  std::vector<std::unique_ptr<Watch>> graveyard_;
  std::unordered_map<uint64_t, Watch*> tokens_;
  std::vector<uint8_t> udp_bufs_;  // kBatch datagrams for recvmmsg
  uint64_t next_id_ = 1;
  std::minstd_rand rng_;
  bool stop_ = false;
  uint64_t event_failures_ = 0;
  std::vector<std::unique_ptr<Watch>> adopted_;
  std::optional<Clock::time_point> idle_since_;
  Clock::time_point last_sweep_ = Clock::now();
};

}  // namespace cni::dns
