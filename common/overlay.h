#pragma once
// One tether network across hosts: the kernel's VXLAN carries traffic between per-host address
// blocks (flannel's vxlan design). Each host has one VXLAN device per overlay (VNI); every other
// host of the cluster ("peer") is, on that device,
//   - an FDB entry:        peer VTEP MAC -> peer underlay address (where to send the frames),
//   - per block of the peer inside the overlay's ranges, a permanent neighbour
//     block.0 -> peer VTEP MAC, and a route `block via block.0 dev <vxlan> onlink`.
// The device has no remote and no learning, so nothing is ever flooded between hosts: a frame
// to a MAC with no FDB entry is dropped. Each local block's network address sits on the device
// as a /32, so that packets the host itself sends to a remote block have a source the peer
// routes back through the overlay.
//
// Two overlays (VNIs) are two devices whose routes cover disjoint ranges: traffic of one never
// enters the other's device, and a packet arriving with one VNI is only delivered to that VNI's
// device. Policy inside one overlay (icc, internal, isolate) stays the bridge plugin's.
//
// The bridge plugin writes an Overlay spec per VNI into the overlay dir and ensures the device;
// the cluster agent (tether-agent) reads the specs, watches the peers in etcd and calls
// sync_peers() on every change -- at start as well, which rebuilds everything after a reboot.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/netlink.h"

namespace cni::overlay {

inline constexpr const char* kDefaultOverlayDir = "/var/lib/cni/tether/overlay";
inline constexpr uint16_t kDefaultPort = 4789;  // IANA VXLAN
// The VXLAN header costs 50 bytes of the underlay MTU (IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14).
inline constexpr unsigned kVxlanOverhead = 50;
// rtm_protocol of the routes sync_peers() owns ("proto 116" in `ip route`): only those are ever
// replaced or removed.
inline constexpr uint8_t kRouteProtocol = 116;

struct Overlay {
  std::string device{};  // default_device(vni) unless set
  uint32_t vni = 0;
  uint16_t port = kDefaultPort;
  IpAddr local{};              // this host's underlay address
  unsigned mtu = 0;            // 0: the underlay link's MTU minus kVxlanOverhead
  std::vector<Prefix> ranges;  // cluster ranges this overlay carries (masked, sorted, unique)

  nlohmann::json to_json() const;
  // Throws Error 7 naming the field of a bad spec (`where` prefixes it).
  static Overlay from_json(const nlohmann::json& j, const std::string& where);
  bool carries(const Prefix& block) const;  // block lies inside one of ranges
};

// "tvx<vni>": at most 11 characters, a valid interface name for every VNI.
std::string default_device(uint32_t vni);

// The VTEP MAC of a host, derived from its underlay address (02:74 + the address's last four
// bytes): stable across reboots and the same for every overlay of the host, so the agent can
// publish it before any device exists and a recreated device keeps it.
Mac vtep_mac(const IpAddr& underlay);

// The link that holds `local`; throws when no link of this netns has that address.
nl::Link underlay_link(nl::Socket& sock, const IpAddr& local);
// The MTU for the VXLAN device and the containers: `mtu` when set, else underlay MTU - 50.
unsigned effective_mtu(nl::Socket& sock, const Overlay& o);

// Creates or keeps the device (nl::ensure_vxlan): VNI, port, local, learning off, the VTEP MAC,
// effective_mtu, up. `created`: the device is new, so its peers must be synced again.
nl::Link ensure_device(nl::Socket& sock, const Overlay& o, bool* created = nullptr);

struct Peer {
  std::string node{};
  IpAddr underlay{};
  Mac vtep_mac{};
  std::vector<Prefix> blocks;
};

struct SyncStats {
  size_t added = 0;    // requests that created or replaced something
  size_t removed = 0;  // requests that deleted something stale
};

// Makes the device's FDB entries, neighbours, routes and /32 addresses exactly those that
// `peers` call for; the entry whose node is `self_node` gives the local blocks (addresses) and
// gets no FDB entry, neighbour or route. Whatever is already right is left alone, so a call with
// nothing changed sends no request; everything is one netlink batch (nl::Batch). The device must
// exist (ensure_device). Throws when the device is missing or a request fails; running it again
// repairs a partial sync.
SyncStats sync_peers(nl::Socket& sock, const Overlay& o, const std::vector<Peer>& peers,
                     const std::string& self_node);

// What the agent runs on every peer-set change and resync: for every spec in `dir`, ensures the
// device (a device missing after a reboot or deleted by hand is created again) and syncs it with
// `peers`. One overlay failing does not stop the others; throws at the end, naming each failure.
// Returns the summed stats.
SyncStats sync_all(nl::Socket& sock, const std::string& dir, const std::vector<Peer>& peers,
                   const std::string& self_node);

// Overlay specs on disk, one file per VNI: "<dir>/<vni>.json". save_overlay merges `o`'s ranges
// into an existing spec of the same VNI (two networks may share one overlay) under the dir's
// lock and returns the merged spec; a spec whose device, port or local address differs is
// replaced by the new one.
Overlay save_overlay(const std::string& dir, const Overlay& o);
std::optional<Overlay> load_overlay(const std::string& dir, uint32_t vni);
// Every spec in `dir` (empty when it does not exist); a spec that cannot be read is skipped
// with a warning, so one bad file cannot stop the others from being synced.
std::vector<Overlay> load_overlays(const std::string& dir);
bool remove_overlay(const std::string& dir, uint32_t vni);

}  // namespace cni::overlay
