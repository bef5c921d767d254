#pragma once
// Per-attachment state: what one ADD put into tether's nftables table, kept as one small JSON
// file per (containerID, ifname) under <stateDir>/<network>/. DEL and GC read it, so they remove
// exactly that attachment's elements even when CNI_NETNS is empty and prevResult is absent.
//
// Crash contract: ADD writes the file before it commits the nftables batch, and DEL/GC remove
// the file only after their batch committed, so no element ever exists without a file that
// names it. The file need not survive a power loss (the ruleset does not either), so it is
// written without fsync; an empty or unreadable file names nothing and is ignored.
#include <optional>
#include <string>
#include <vector>

#include "common/types.h"

namespace cni::bridge {

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
  bool spoofchk = false;              // host_veth . container_mac is in the bridge table

  json to_json() const;
  // Throws Error code 6 when the JSON is not a state file of this shape.
  static AttachmentState from_json(const json& j);
};

// "<dir>/<containerID>:<ifname>.json". A container ID never contains ':' (the spec's regex) nor
// does an interface name, so the pair maps to exactly one file.
std::string state_file(const std::string& dir, const std::string& container_id,
                       const std::string& ifname);
void save_state(const std::string& dir, const AttachmentState& state);
// nullopt when there is no file; a file that does not parse is reported and treated as absent
// (it cannot name anything we could remove safely).
std::optional<AttachmentState> load_state(const std::string& dir, const std::string& container_id,
                                          const std::string& ifname);
void remove_state(const std::string& dir, const std::string& container_id,
                  const std::string& ifname);
// Every readable state file in `dir`.
std::vector<AttachmentState> list_states(const std::string& dir);

}  // namespace cni::bridge
