#pragma once
// The bridge plugin's half of an overlay network (common/overlay.h): on ADD it records the
// overlay spec for the host's agent and ensures the VXLAN device, so that the first container
// of a network on a host finds the device there; the agent owns the peers' routes, neighbours
// and FDB entries.
#include "common/netlink.h"
#include "common/overlay.h"
#include "plugins/bridge/config.h"

namespace cni::bridge {

// This host's underlay address: `address` of the cluster file. Error 7 naming the file when it
// is missing or has no valid address.
IpAddr cluster_address(const std::string& cluster_file);

// The network's overlay spec (device, VNI, port, local = the cluster address, mtu = cfg.mtu,
// ranges = the cluster ranges), saved into cfg.overlay_dir merged with other networks of the
// same VNI; the device is ensured. Returns the merged spec.
overlay::Overlay setup_overlay(nl::Socket& host, const Config& cfg);

// CHECK: the device of cfg's overlay is there with its VNI and port.
void check_overlay(nl::Socket& host, const Config& cfg);

}  // namespace cni::bridge
