#pragma once
// Per-attachment state: which elements an attachment added to which table, kept in the common
// attachment store (common/attachment_store.h) under stateDir and saved before the batch that
// adds them commits. Its lifetime is the ruleset's: both are meant to be gone after a reboot
// (the default stateDir is under /run), so it is replaced atomically but not fsynced.
// The file therefore always covers what is in nftables (a crash leaves at most elements that
// never made it in, which DEL skips), and DEL and GC work without prevResult or the mappings.
#include <optional>
#include <string>
#include <vector>

#include "common/attachment_store.h"
#include "plugins/portmap/plan.h"

namespace cni::portmap {

using Attachment = AttachmentKey;

struct State {
  Attachment attachment;
  std::string table;
  std::vector<Group> groups;
  std::vector<FlushTarget> udp;

  json to_json() const;
  // Throws Error code 5 (naming `path` when given) when it is not a state file we wrote.
  static State from_json(const json& j, const std::string& path = {});
};

using StateStore = AttachmentStore<State>;
// The store under `state_dir`; the files portmap 0.1 wrote (<network>/<containerID>@<ifname>.json)
// are its older layout: read, listed, removed, and moved by the next save.
StateStore state_store(const std::string& state_dir);

}  // namespace cni::portmap
