// tether-bench-overlay-sync: one overlay::sync_all in the current netns, with the peer set from
// a JSON file -- what tether-agent's overlay sink does on every peer-set change, without etcd.
// The overlay benchmark and `make demo` use it to wire simulated hosts to each other.
//   tether-bench-overlay-sync <overlayDir> <peers.json> <self node>
// peers.json: [{"node": "h1", "address": "192.168.60.11", "blocks": ["10.40.1.0/24"]}, ...]
// (the VTEP MAC is derived from the address, as the agent publishes it).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/netlink.h"
#include "common/overlay.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <overlayDir> <peers.json> <self node>\n", argv[0]);
    return 2;
  }
  try {
    std::ifstream in(argv[2]);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const nlohmann::json j = nlohmann::json::parse(text);
    std::vector<cni::overlay::Peer> peers;
    for (const nlohmann::json& p : j) {
      cni::overlay::Peer peer;
      peer.node = p.at("node").get<std::string>();
      peer.underlay = cni::IpAddr::parse(p.at("address").get<std::string>()).value();
      peer.vtep_mac = cni::overlay::vtep_mac(peer.underlay);
      for (const nlohmann::json& b : p.at("blocks")) {
        peer.blocks.push_back(cni::Prefix::parse(b.get<std::string>()).value());
      }
      peers.push_back(std::move(peer));
    }
    cni::nl::Socket sock = cni::nl::Socket::open();
    const cni::overlay::SyncStats s = cni::overlay::sync_all(sock, argv[1], peers, argv[3]);
    std::printf("{\"added\": %zu, \"removed\": %zu}\n", s.added, s.removed);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "overlay sync: %s\n", e.what());
    return 1;
  }
}
