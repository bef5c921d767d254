#pragma once
// Per-attachment state: what one ADD put into tether's nftables table, kept as one small JSON
// file per (containerID, ifname) under <stateDir>/<network>/. DEL and GC read it, so they remove
// exactly that attachment's elements even when CNI_NETNS is empty and prevResult is absent.
//
// Crash contract: ADD writes the file before it commits the nftables batch, and DEL/GC remove
// the file only after their batch committed, so no element ever exists without a file that
// names it. The file need not survive a power loss (the ruleset does not either), so it is
// written without fsync; an empty or unreadable file names nothing (the store's corrupt-file
// policy: absent for ADD, DEL and GC, which remove it; error 100 for CHECK).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/attachment_store.h"
#include "common/types.h"

namespace cni::bridge {

// One opened link (README: Links): connections from `src` (the container) to `peer` on
// proto/port, allowed through icc=false on the attachment's firewall interfaces.
struct LinkRule {
  std::string src;   // IPv4, without prefix
  std::string peer;  // IPv4
  uint8_t proto = 0;
  uint16_t port = 0;
};

struct AttachmentState {
  std::string container_id;
  std::string ifname;
  std::string bridge;
  // The interfaces the firewall keys on: the bridge, plus the VLAN gateway interface when one
  // carries the gateway address (routed traffic then enters and leaves through it).
  std::vector<std::string> fw_ifaces;
  std::string host_veth;
  std::string container_mac;
  std::vector<std::string> masq_ips;  // container addresses masqueraded, without prefix
  // CIDRs that masq_ips are never masqueraded towards (ipMasqExclude and the overlay's cluster
  // ranges): one nomasq element per address and CIDR of the same family.
  std::vector<std::string> masq_exclude;
  bool spoofchk = false;        // host_veth . container_mac is in the bridge table
  std::vector<LinkRule> links;  // elements of links4, per fw_iface

  json to_json() const;
  // Throws Error code 6 when the JSON is not a state file of this shape.
  static AttachmentState from_json(const json& j);
};

// The states, in the common store (common/attachment_store.h) under stateDir: its layout is
// the one bridge has always written, so there is no older one to read. Not fsynced (above).
using StateStore = AttachmentStore<AttachmentState>;
inline StateStore state_store(const std::string& state_dir) {
  return StateStore(state_dir, StateStore::Durability::kKernelLifetime);
}

}  // namespace cni::bridge
