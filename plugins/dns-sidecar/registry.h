#pragma once
// The registrations: one Record per attachment (network, container ID, ifname), kept in memory
// by the daemon and persisted by the plugin as one JSON file per attachment under
// <stateDir>/records, replaced atomically (not durably: see RecordStore::save), so that a
// restarted daemon serves every name.
#include <compare>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

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

struct AttachmentKey {
  std::string network;
  std::string container_id;
  std::string ifname;
  auto operator<=>(const AttachmentKey&) const = default;
  std::string str() const { return network + "/" + container_id + "/" + ifname; }
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
  uint64_t serial = 0;  // registration time in ns; orders the network settings

  json to_json() const;
  // Throws Error code 7 naming the field for a malformed record or an invalid name.
  static Record from_json(const json& j);
  // Throws Error code 7 naming the offending name, alias or server.
  void validate() const;
  // Every name this record publishes network-wide: name, hostname, aliases.
  std::vector<std::string> network_names() const;
};

// The in-memory set the daemon serves.
class Registry {
 public:
  void upsert(Record r) { records_[r.key] = std::move(r); }
  bool erase(const AttachmentKey& key) { return records_.erase(key) > 0; }
  // Replaces every record of `network` with `records` (a reload after GC).
  void replace_network(const std::string& network, std::vector<Record> records);
  const std::map<AttachmentKey, Record>& records() const { return records_; }

 private:
  std::map<AttachmentKey, Record> records_;
};

// The files: <dir>/<network>@<containerID>@<ifname>.json. '@' cannot occur in a network name or
// a container ID, so the name splits back unambiguously.
class RecordStore {
 public:
  explicit RecordStore(std::string state_dir);
  const std::string& dir() const { return dir_; }
  std::string path(const AttachmentKey& key) const;
  void save(const Record& r) const;  // creates the directory (0700) when needed
  bool remove(const AttachmentKey& key) const;
  std::optional<Record> load(const AttachmentKey& key) const;
  // Attachments with a file, of one network or of all.
  std::vector<AttachmentKey> list(const std::optional<std::string>& network = {}) const;
  // Every readable, valid record; others are logged and skipped.
  std::vector<Record> load_all(const std::optional<std::string>& network = {}) const;

 private:
  std::string dir_;
};

}  // namespace cni::dns
