#include "plugins/bridge/overlay.h"

#include <spdlog/spdlog.h>

#include "common/agent_client.h"
#include "common/cluster.h"
#include "common/error.h"

namespace cni::bridge {

IpAddr cluster_address(const std::string& cluster_file) {
  return cluster::ClusterConfig::load(cluster_file).address;
}

namespace {

// The bridge's overlayDir when set, else the cluster file's (where tether-agent looks).
std::string overlay_dir(const Config& cfg, const cluster::ClusterConfig& c) {
  return cfg.overlay_dir.empty() ? c.overlay_dir : cfg.overlay_dir;
}

}  // namespace

overlay::Overlay setup_overlay(nl::Socket& host, const Config& cfg) {
  overlay::Overlay o;
  o.vni = cfg.overlay->vni;
  o.port = cfg.overlay->port;
  o.device = cfg.overlay_device();
  const cluster::ClusterConfig c = cluster::ClusterConfig::load(cfg.cluster_file);
  o.local = c.address;
  o.mtu = cfg.mtu;
  o.ranges = cfg.cluster_ranges;
  const std::string dir = overlay_dir(cfg, c);
  const std::optional<overlay::Overlay> before = overlay::load_overlay(dir, o.vni);
  overlay::Overlay merged = overlay::save_overlay(dir, o);
  bool created = false;
  overlay::ensure_device(host, merged, &created);
  // A new device has no peers yet, and a spec with a new range lacks that range's routes: the
  // agent syncs at once rather than at its next peer change or resync.
  if (created || !before || before->to_json() != merged.to_json()) {
    if (!cluster::nudge_agent(c)) spdlog::debug("no tether-agent to resync {}", merged.device);
  }
  return merged;
}

void check_overlay(nl::Socket& host, const Config& cfg) {
  const std::string dev = cfg.overlay_device();
  const std::optional<nl::Vxlan> vx = nl::get_vxlan(host, dev);
  if (!vx) throw Error(kErrInternal, "CHECK failed", "overlay device " + dev + " not found");
  if (vx->vni != cfg.overlay->vni || vx->port != cfg.overlay->port) {
    throw Error(kErrInternal, "CHECK failed",
                "overlay device " + dev + " has vni " + std::to_string(vx->vni) + " port " +
                    std::to_string(vx->port));
  }
  if (!vx->link.up())
    throw Error(kErrInternal, "CHECK failed", "overlay device " + dev + " is down");
}

}  // namespace cni::bridge
