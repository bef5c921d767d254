#pragma once
// The plugin's configuration, in one place: the network config keys, podman dnsname's keys,
// the `aliases` and `dns` capabilities (runtimeConfig) and the container's identity from args
// and CNI_ARGS. Precedence CNI_ARGS < args < runtimeConfig; wrong types and invalid names are
// error 7 naming the key. See README.md for the table.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/netconf.h"
#include "common/types.h"

namespace cni::dns {

// `.internal` is reserved for private use (ICANN, 2024): never delegated, so a container name
// can never shadow or leak to a real domain.
inline constexpr const char* kDefaultDomain = "tether.internal";
// Under /run: registrations describe running containers, which do not survive a reboot either.
inline constexpr const char* kDefaultStateDir = "/run/tether/dns-sidecar";
inline constexpr const char* kSocketName = "control.sock";

struct Config {
  std::string network;
  std::string domain = kDefaultDomain;  // domainName
  std::vector<std::string> upstreams;   // network-scoped servers
  std::string state_dir = kDefaultStateDir;
  std::string socket;  // default <stateDir>/control.sock
  uint32_t ttl = 0;
  std::optional<uint16_t> port;  // nullopt: the daemon's default (53)
  bool internal = false;
  std::string resolv_conf;  // host resolv.conf for a daemon this plugin starts; "" = its default
  std::string log_file;
  std::string log_level;
  // `cluster` (true: /etc/tether/cluster.json, or a path): the cluster file the daemon this
  // plugin starts publishes names through; "" without a cluster.
  std::string cluster_file;

  // The container: name from args.cni.name, else CNI_ARGS K8S_POD_NAME.
  std::string name;
  std::string hostname;                          // args.cni.hostname
  std::vector<std::string> aliases;              // runtimeConfig.aliases > args.cni.aliases
  std::vector<std::string> container_aliases;    // args.cni.containerAliases
  std::vector<std::string> container_upstreams;  // runtimeConfig.dns.servers
  std::vector<std::string> searches;             // runtimeConfig.dns.searches
  std::vector<std::string> options;              // runtimeConfig.dns.options

  // GC: cni.dev/valid-attachments (or cni.dev/attachments) as (containerID, ifname);
  // nullopt when the config carries neither, which is not the same as an empty list.
  std::optional<std::vector<Attachment>> valid_attachments;

  static Config parse(const NetConf& conf, const CniArgs& cni_args);
};

}  // namespace cni::dns
