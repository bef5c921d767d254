#pragma once
// The registrations: one Record per attachment (network, container ID, ifname), kept in memory
// by the daemon and persisted by the plugin as one JSON file per attachment in the common
// attachment store under <stateDir>/records, replaced atomically (not durably: see
// RecordStore), so that a restarted daemon serves every name.
#include <compare>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/attachment_store.h"
#include "common/ip.h"

namespace cni::dns {

using json = nlohmann::json;

// Properties of a network, carried by each of its records; the newest record's copy wins.
struct NetworkSettings {
  std::string domain;                  // normalized; names resolve as name and name.<domain>
  std::vector<std::string> upstreams;  // network-scoped DNS servers
  bool internal = false;               // never forward queries from this network
  uint32_t ttl = 0;
  std::optional<uint16_t> port;  // listening port; nullopt: the daemon's --port
};

// An attachment with the node (host) that published its record: this daemon's node for local
// registrations, another host's for records learnt through the cluster. The node is not part of
// the file name: a store sees the plain attachment.
struct AttachmentKey : cni::AttachmentKey {
  std::string node;
  auto operator<=>(const AttachmentKey&) const = default;
  std::string str() const { return cni::AttachmentKey::str() + (node.empty() ? "" : "@" + node); }
};

struct Record {
  AttachmentKey key;
  std::string name;                  // container name; may be empty
  std::string hostname;              // published like a network-scoped alias; may be empty
  std::vector<std::string> aliases;  // network-scoped
  // Container-scoped: resolvable only from this container. "alias" names the container itself,
  // "alias=target" resolves as `target` would (Docker's links).
  std::vector<std::string> container_aliases;
  std::vector<Prefix> addresses;       // the container's addresses with their prefix lengths
  std::vector<IpAddr> gateways;        // where the daemon listens for this network
  std::vector<std::string> upstreams;  // per-container DNS servers
  NetworkSettings net;
  uint64_t serial = 0;   // registration time in ns; orders the network settings
  bool cluster = false;  // published to the cluster (the plugin's config has `cluster`)

  json to_json() const;
  // Throws Error code 7 naming the field for a malformed record or an invalid name.
  static Record from_json(const json& j);
  // Throws Error code 7 naming the offending name, alias or server.
  void validate() const;
  // Every name this record publishes network-wide: name, hostname, aliases.
  std::vector<std::string> network_names() const;
};

// The in-memory set the daemon serves: local and remote records in one map, told apart by
// their key's node.
class Registry {
 public:
  void upsert(Record r);
  bool erase(const AttachmentKey& key);
  // Replaces every record of `network` with `records` (a reload after GC).
  void replace_network(const std::string& network, std::vector<Record> records);
  const std::map<AttachmentKey, Record>& records() const { return records_; }
  const Record* find(const AttachmentKey& key) const;
  size_t count_of_node(const std::string& node) const;

 private:
  std::map<AttachmentKey, Record> records_;
  std::map<std::string, size_t> per_node_;
};

// The files: <stateDir>/records/<network>/<containerID>:<ifname>.json (common/attachment_store.h);
// those of dns-sidecar 0.1, <stateDir>/records/<network>@<containerID>@<ifname>.json, are its
// older layout. Atomic but not durable: a registration describes a running container, and
// neither survives a power loss. A daemon crash loses nothing (the page cache has it); two
// fsyncs would cost ~15 ms per ADD on a disk-backed /run.
class RecordStore : public AttachmentStore<Record> {
 public:
  explicit RecordStore(const std::string& state_dir);
  using AttachmentStore<Record>::save;
  void save(const Record& r) const { save(r.key, r); }
  // Every record that loads, of one network or of all; corrupt files are logged and skipped.
  std::vector<Record> load_all(const std::optional<std::string>& network = {}) const;
};

}  // namespace cni::dns
