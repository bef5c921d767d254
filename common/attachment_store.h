#pragma once
// The per-attachment state a plugin keeps to undo its work without prevResult: one small JSON
// file per attachment (network, containerID, ifname), under a root directory that belongs to
// one plugin (bridge, portmap and dns-sidecar each have their own stateDir).
//
// Layout: <root>/<network>/<containerID>:<ifname>.json. Neither a container ID (the spec's
// regex) nor a Linux interface name (dev_valid_name) can contain ':', and a network name is a
// valid directory name (the same regex), so a file name splits back into its key.
//
// Writes are atomic (temp file + rename): a reader sees the old file or the new one, never a
// partial one. Durability::kKernelLifetime skips the fsyncs, for state that mirrors what a
// reboot empties anyway (nftables elements, a daemon's registrations); its files can be found
// empty after a power loss, which the corrupt-file policy below covers.
//
// Corrupt files, one policy for every plugin: a file that is not JSON or not of the plugin's
// shape names nothing that can be removed safely. load() logs a warning and returns nullopt
// (ADD overwrites it, DEL and GC remove it with remove()); load_checked() -- CHECK's read --
// throws kErrStateCorrupt, since CHECK's job is to report that state is not as it should be.
//
// Older layouts (Legacy) are read, listed and removed, never written: a node upgraded while
// containers run finds their files, and the next save of an attachment moves it to the layout
// above.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/types.h"

namespace cni {

// CHECK: an attachment's state file is corrupt (plugin-specific code; see above).
inline constexpr int kErrStateCorrupt = 100;

struct AttachmentKey {
  std::string network;
  std::string container_id;
  std::string ifname;
  auto operator<=>(const AttachmentKey&) const = default;
  std::string str() const { return network + "/" + container_id + "/" + ifname; }
};

// The files, as JSON; AttachmentStore<T> below is what plugins use.
class AttachmentFiles {
 public:
  enum class Durability { kDurable, kKernelLifetime };
  enum class Legacy {
    kNone,
    kAtInNetworkDir,  // <root>/<network>/<containerID>@<ifname>.json (portmap 0.1)
    kFlatAt,          // <root>/<network>@<containerID>@<ifname>.json (dns-sidecar 0.1)
  };

  explicit AttachmentFiles(std::string root, Durability durability = Durability::kDurable,
                           Legacy legacy = Legacy::kNone);

  const std::string& root() const { return root_; }
  std::string path(const AttachmentKey& key) const;
  // Creates the directories (0700) as needed; replaces the key's file of an older layout.
  void save_json(const AttachmentKey& key, const json& state) const;
  // True when a file of the key (any layout) existed.
  bool remove(const AttachmentKey& key) const;
  // Whether the key has a file (any layout), without reading it.
  bool contains(const AttachmentKey& key) const;
  // The keys with a file, sorted, of one network or of all; from the file names (nothing is
  // parsed). Hidden files (atomic writes in progress) and foreign names are skipped.
  std::vector<AttachmentKey> list(const std::string& network) const;
  std::vector<AttachmentKey> list() const;

 protected:
  // Calls `parse` with the key's JSON, when it has a file; a file that is not JSON or that
  // `parse` rejects (cni::Error or a JSON exception) is handled by the policy above.
  void read(const AttachmentKey& key, const std::function<void(const json&)>& parse,
            bool check) const;

 private:
  std::optional<std::string> legacy_path(const AttachmentKey& key) const;
  void list_into(const std::string& network, std::vector<AttachmentKey>& out) const;
  void list_flat_into(const std::string* network, std::vector<AttachmentKey>& out) const;

  std::string root_;
  Durability durability_;
  Legacy legacy_;
};

// The store of one plugin's state type T: `json T::to_json() const` and `static T
// T::from_json(const json&)`, which throws on a file not of T's shape.
template <class T>
class AttachmentStore : public AttachmentFiles {
 public:
  using AttachmentFiles::AttachmentFiles;
  void save(const AttachmentKey& key, const T& state) const { save_json(key, state.to_json()); }
  // nullopt when the key has no file; corrupt: a warning, nullopt.
  std::optional<T> load(const AttachmentKey& key) const { return load_as(key, false); }
  // As load(), but a corrupt file is Error kErrStateCorrupt naming it (CHECK).
  std::optional<T> load_checked(const AttachmentKey& key) const { return load_as(key, true); }

 private:
  std::optional<T> load_as(const AttachmentKey& key, bool check) const {
    std::optional<T> out;
    read(
        key, [&](const json& j) { out = T::from_json(j); }, check);
    return out;
  }
};

}  // namespace cni
