#pragma once
// Per-attachment state: which elements an attachment added to which table, persisted atomically
// as <stateDir>/<network>/<containerID>@<ifname>.json before the batch that adds them commits.
// Its lifetime is the ruleset's: both are meant to be gone after a reboot (the default stateDir
// is under /run), so it is replaced atomically but not fsynced.
// The file therefore always covers what is in nftables (a crash leaves at most elements that
// never made it in, which DEL skips), and DEL and GC work without prevResult or the mappings.
#include <optional>
#include <string>
#include <vector>

#include "plugins/portmap/plan.h"

namespace cni::portmap {

struct Attachment {
  std::string network;
  std::string container_id;
  std::string ifname;
  std::string str() const { return container_id + "/" + ifname + " of network " + network; }
};

struct State {
  Attachment attachment;
  std::string table;
  std::vector<Group> groups;
  std::vector<FlushTarget> udp;

  json to_json() const;
  // Throws Error code 5 naming the file when it is not a state file we wrote.
  static State from_json(const json& j, const std::string& path);
};

// The file of one attachment. A container ID cannot contain '@', so the name is unambiguous.
std::string state_path(const std::string& state_dir, const Attachment& a);
std::string network_dir(const std::string& state_dir, const std::string& network);

// nullopt when the file does not exist, and (with a warning) when it is not a complete state
// file, which a power loss can leave behind (save_state does not fsync: see atomic_replace).
std::optional<State> load_state(const std::string& path);
void save_state(const std::string& path, const State& state);

// Every state file under the directory, of every network (for naming a conflict's owner).
std::vector<std::pair<std::string, State>> load_all_states(const std::string& state_dir);

}  // namespace cni::portmap
