#pragma once
// host-local's configuration: the `ipam` section of the network config, the runtime's
// capability args (runtimeConfig.ipRanges, runtimeConfig.ips), args.cni.ips and CNI_ARGS IP=.
// Same keys, defaults and validation messages as the reference host-local.
#include <optional>
#include <string>
#include <vector>

#include "common/cluster.h"
#include "common/netconf.h"
#include "common/types.h"
#include "plugins/ipam-host-local/attachment.h"
#include "plugins/ipam-host-local/range.h"

namespace cni::hostlocal {

inline constexpr const char* kDefaultDataDir = "/var/lib/cni/networks";

struct Config {
  std::string network;  // the network name: the lease directory under data_dir
  // Canonical range sets in allocation order: runtimeConfig.ipRanges, then the legacy top-level
  // subnet, then ipam.ranges. Set i keeps its round-robin hint in last_reserved_ip.<i>.
  std::vector<RangeSet> range_sets;
  std::vector<Route> routes;  // passed through to the result unchanged
  std::string data_dir = kDefaultDataDir;
  std::string resolv_conf;  // the host file layer of the result's dns; empty: none
  // The result's dns is merged per field: runtime_dns > network_dns > resolv_conf's
  // (common/dns_settings.h).
  std::optional<Dns> network_dns;  // the network config's top-level `dns` key
  Dns runtime_dns;                 // the `dns` capability (runtimeConfig.dns)
  // Addresses asked for, de-duplicated, in order. Only the highest-precedence source that
  // names any is used: runtimeConfig.ips > args.cni.ips > CNI_ARGS IP=.
  std::vector<IpAddr> requested_ips;

  // GC's cni.dev/valid-attachments (or the older cni.dev/attachments); nullopt when the
  // config carries neither, which is not the same as an empty list.
  std::optional<std::vector<Attachment>> valid_attachments;

  // Cluster mode (ipam.cluster, cluster_blocks.h): every range set is one range whose subnet
  // is a cluster range, allocated from blocks of prefix length block_size (ipam.blockSize).
  std::optional<cluster::ClusterConfig> cluster;
  int block_size = 24;
  bool release_empty_blocks = false;  // ipam.releaseEmptyBlocks: GC gives empty blocks back

  // Throws Error code 7 naming the key for an invalid config, code 4 for bad CNI_ARGS.
  static Config parse(const NetConf& conf, const CniArgs& cni_args);

  std::string store_dir() const { return data_dir + "/" + network; }
};

}  // namespace cni::hostlocal
