#pragma once
// The bridge plugin's configuration: the reference bridge's keys with the same names and
// defaults (anchors §2.1), plus tether's own switches modelled on Docker's bridge driver (icc,
// internal, isolate, firewall) and where tether keeps its state (nftTable, stateDir).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/mac.h"
#include "common/netconf.h"
#include "common/types.h"

namespace cni::bridge {

inline constexpr const char* kDefaultBridge = "cni0";
inline constexpr const char* kDefaultNftTable = "tether";
inline constexpr const char* kDefaultStateDir = "/var/lib/cni/tether/bridge";
inline constexpr const char* kDefaultClusterFile = "/etc/tether/cluster.json";

// `"overlay": {"vni": 4242, "port": 4789}`: the network spans the hosts of the cluster over a
// VXLAN device (common/overlay.h).
struct OverlayConf {
  uint32_t vni = 0;
  uint16_t port = 4789;
};

enum class Firewall { kNftables, kNone };

// Docker's `--link` exemption from icc=false, declared by the linking container in
// args.cni.links: it may open connections to `peer` on these ports (README: Links).
struct LinkPort {
  uint8_t proto = 0;  // IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP
  uint16_t port = 0;
  bool operator==(const LinkPort&) const = default;
};
struct PeerLink {
  IpAddr peer;  // IPv4
  std::vector<LinkPort> ports;
};

struct Config {
  std::string network;    // the network name
  std::string ipam_type;  // empty: L2 only, no IPAM

  // Reference keys.
  std::string bridge = kDefaultBridge;
  bool is_gateway = false;
  bool is_default_gateway = false;  // implies is_gateway
  bool force_address = false;
  bool ip_masq = false;
  std::string ip_masq_backend;  // "", "iptables" or "nftables": all done in tether's nft table
  unsigned mtu = 0;             // 0: kernel default
  bool hairpin_mode = false;
  bool promisc_mode = false;
  int vlan = 0;
  std::vector<int> vlan_trunk;  // sorted, unique
  bool vlan_trunk_set = false;  // the key was present (turns on VLAN filtering even if empty)
  bool preserve_default_vlan = false;
  bool macspoofchk = false;
  bool enable_dad = false;
  bool disable_container_interface = false;
  bool port_isolation = false;
  std::optional<Dns> dns;  // set only when the config's dns has any field
  Dns runtime_dns;         // the `dns` capability (runtimeConfig.dns); empty when absent
  std::optional<Mac> mac;  // CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac

  // tether keys.
  bool icc = true;
  bool internal = false;
  bool isolate = false;
  std::vector<PeerLink> links;  // args.cni.links; only acted on with icc=false
  Firewall firewall = Firewall::kNftables;
  std::string nft_table = kDefaultNftTable;
  std::string state_dir = kDefaultStateDir;
  std::optional<OverlayConf> overlay;
  std::string overlay_dir;  // where overlay specs go; empty: the cluster file's overlayDir
  std::string cluster_file = kDefaultClusterFile;  // "cluster": this host's underlay address
  // With an overlay: the cluster ranges, i.e. the subnets of ipam.ranges (or ipam.subnet).
  std::vector<Prefix> cluster_ranges;
  std::vector<Prefix> ip_masq_exclude;  // ipMasqExclude, masked

  // GC only: cni.dev/valid-attachments (or cni.dev/attachments); nullopt when absent.
  std::optional<std::vector<Attachment>> valid_attachments;

  // Throws Error code 7 naming the key for an invalid config, code 4 for bad CNI_ARGS.
  static Config parse(const NetConf& conf, const CniArgs& cni_args);

  bool layer3() const { return !ipam_type.empty(); }
  bool vlan_filtering() const { return vlan != 0 || vlan_trunk_set; }
  // True when this network needs anything in nftables.
  bool uses_nft() const { return firewall == Firewall::kNftables; }
  // Masquerade is on only where something is forwarded at all.
  bool masquerade() const { return ip_masq && !internal && layer3(); }
  // The bridge port's isolated flag: the reference's portIsolation, and the L2 half of icc=false.
  bool isolated_port() const { return port_isolation || !icc; }
  // Destinations never masqueraded to: ipMasqExclude and the cluster ranges, those covered by
  // another left out (elements of one interval set must not overlap).
  std::vector<Prefix> masq_exclusions() const;
  std::string overlay_device() const;  // "tvx<vni>", empty without an overlay
  // Per-attachment state lives here (one JSON file per containerID/ifname).
  std::string network_state_dir() const { return state_dir + "/" + network; }
};

}  // namespace cni::bridge
