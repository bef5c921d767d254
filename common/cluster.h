#pragma once
// The host-level cluster file: which etcd holds the cluster's shared state, and who this host is
// in it. Default /etc/tether/cluster.json; a plugin opts in with its `"cluster"` key:
//   "cluster": true          the default file
//   "cluster": "<path>"      that file
//   absent, null or false    no cluster: the plugin behaves exactly as on a single host (the
//                            default file is not even looked at)
// File:
//   {"etcd": ["http://192.168.50.10:2379", ...],   endpoints, tried in order (failover)
//    "node": "docker1",                            this host's unique name
//    "address": "192.168.50.101",                  this host's underlay address (VXLAN source)
//    "tls": {"cert": "...", "key": "...", "ca": "..."},  optional client TLS for https endpoints
//    "prefix": "/tether",                          optional: root of every tether key in etcd
//    "agentSocket": "/run/tether/agent.sock",      optional: tether-agent's control socket
//    "stateDir": "/var/lib/tether/agent",          optional: the agent's persisted state
//    "overlayDir": "/var/lib/cni/tether/overlay",  optional: the overlay specs the bridge writes
//                                                  and the agent syncs (common/overlay.h)
//    "leaseTTL": 10,                               optional: seconds a dead host stays published
//    "timeoutMs": 2000}                            optional: budget of one etcd request
// Every bad value is Error 7 naming the key ("cluster.etcd[1]", "cluster.tls.ca").
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip.h"

namespace cni::cluster {

inline constexpr const char* kDefaultFile = "/etc/tether/cluster.json";
inline constexpr const char* kDefaultPrefix = "/tether";
inline constexpr const char* kDefaultAgentSocket = "/run/tether/agent.sock";
inline constexpr const char* kDefaultStateDir = "/var/lib/tether/agent";
inline constexpr const char* kDefaultOverlayDir = "/var/lib/cni/tether/overlay";
inline constexpr int kDefaultLeaseTtl = 10;
inline constexpr int kDefaultTimeoutMs = 2000;

struct Tls {
  std::string cert{};  // client certificate (PEM); empty: none
  std::string key{};   // its private key (PEM); required with cert
  std::string ca{};    // CA bundle that signs the servers; empty: the system's
};

struct ClusterConfig {
  std::string path{};  // the file it came from, for messages
  std::vector<std::string> etcd;
  std::string node{};
  IpAddr address{};
  std::optional<Tls> tls;
  std::string prefix = kDefaultPrefix;  // no trailing '/'
  std::string agent_socket = kDefaultAgentSocket;
  std::string state_dir = kDefaultStateDir;
  std::string overlay_dir = kDefaultOverlayDir;
  int lease_ttl = kDefaultLeaseTtl;
  int timeout_ms = kDefaultTimeoutMs;

  // `where` names the file in messages. Throws Error 7 naming the key.
  static ClusterConfig parse(const nlohmann::json& j, const std::string& where);
  // Reads and parses `path`; a missing or unreadable file and bad JSON are Error 7 too.
  static ClusterConfig load(const std::string& path);

  // "<prefix>/<rest>"
  std::string key(std::string_view rest) const;
};

// The cluster file a plugin's config object asks for through its `"cluster"` key (see above),
// loaded; nullopt when the key is absent, null or false. `where` prefixes the key in messages
// ("ipam" gives "ipam.cluster").
std::optional<ClusterConfig> from_plugin_conf(const nlohmann::json& obj, std::string_view where);

// A node name: 1-63 of [A-Za-z0-9._-], not starting with '.' or '-'. It becomes part of etcd
// keys, so nothing else is allowed.
bool valid_node_name(std::string_view name);

}  // namespace cni::cluster
