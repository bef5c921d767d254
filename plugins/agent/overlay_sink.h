#pragma once
// The overlay's kernel sync as a PeerSink: on every peer-set change and resync, every overlay
// spec in the cluster file's overlayDir gets its VXLAN device (created again after a reboot)
// and exactly the peers' FDB entries, neighbours and routes (common/overlay.h, sync_all).
#include <string>
#include <utility>

#include "common/netlink.h"
#include "common/overlay.h"
#include "plugins/agent/peers.h"

namespace cni::agent {

class OverlaySink : public PeerSink {
 public:
  explicit OverlaySink(std::string dir) : dir_(std::move(dir)) {}
  const char* name() const override { return "overlay"; }
  void sync(const std::vector<NodeRecord>& peers, const std::string& self) override {
    nl::Socket sock = nl::Socket::open();  // the agent's netns: the host's
    overlay::sync_all(sock, dir_, peers, self);
  }

 private:
  std::string dir_;
};

}  // namespace cni::agent
