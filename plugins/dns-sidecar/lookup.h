#pragma once
// The lookup tables the daemon answers from, kept in step with the Registry record by record,
// and name resolution within a client's scope:
// a query sees the networks of the container that sent it, and that container's own aliases.
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/ip.h"
#include "plugins/dns-sidecar/registry.h"
#include "plugins/dns-sidecar/upstream.h"

namespace cni::dns {

struct IpHash {
  size_t operator()(const IpAddr& ip) const;
};

// Transparent hashing, so that lookups by string_view allocate nothing.
struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using NameMap = std::unordered_map<std::string, V, NameHash, std::equal_to<>>;

struct ListenKey {
  IpAddr addr;
  uint16_t port = 53;
  auto operator<=>(const ListenKey&) const = default;
};

struct NetworkView {
  std::string name;
  // The network's name as a DNS label (normalized), for Docker's `<name>.<network>` form;
  // empty when the name is not one label (then the form is not served, with a warning).
  std::string label;
  NetworkSettings settings;  // of the newest local record, else of the newest remote one
  std::vector<Upstream> upstreams;
  std::vector<Prefix> subnets;  // of the registered addresses: who may ask
  // Normalized name -> (address, record id) of every record publishing it; a record's entries
  // are removed with it, so a name shared by several records keeps the others'.
  NameMap<std::vector<std::pair<IpAddr, uint64_t>>> names;
  // Reverse name -> (serial, record id, name.<domain>); the oldest record answers.
  NameMap<std::vector<std::tuple<uint64_t, uint64_t, std::string>>> ptr;
  uint64_t gen = 0;  // bumped (from one counter for the whole index) at every change
  size_t records = 0;

  // Bookkeeping for incremental updates.
  std::map<Prefix, uint32_t> subnet_refs;
  // (local, serial, record id) -> settings: the last entry is the network's settings.
  std::map<std::tuple<bool, uint64_t, uint64_t>, NetworkSettings> settings_by_record;
};

struct ContainerView {
  std::string node;
  std::string id;
  uint64_t uid = 0;                // never reused: identifies the container in cache keys
  uint64_t gen = 0;                // as NetworkView::gen
  std::vector<uint32_t> networks;  // indices into Index::networks()
  std::vector<IpAddr> addresses;
  std::vector<Upstream> upstreams;
  // Container-scoped aliases: alias -> target name, "" for the container itself.
  NameMap<std::string> aliases;
  std::vector<AttachmentKey> records;  // the attachments it is made of
};

// What one client may see. `container` is null for a source that is inside a registered
// subnet but is no registered container (the host on the gateway, an unregistered peer).
struct Scope {
  std::vector<uint32_t> networks;
  const ContainerView* container = nullptr;
};

struct Resolution {
  enum class Kind { kFound, kNxDomain, kNotLocal };
  Kind kind = Kind::kNotLocal;
  std::vector<IpAddr> addresses;  // kFound: every address of the name, both families, no dups
};

// The lookup tables, updated record by record: add() and remove() cost O(names and addresses
// of that record) (log n for the ordered maps), never a pass over every record, so that a
// daemon holding thousands of (cluster) records registers as fast as an empty one.
class Index {
 public:
  // `default_port` is the daemon's --port, for networks that do not name one.
  explicit Index(uint16_t default_port = 53) : default_port_(default_port) {}
  static Index build(const Registry& registry, uint16_t default_port);

  // Adds `r`, replacing an earlier record with the same key. `local`: published by this host
  // (its network settings win over remote records').
  void add(const Record& r, bool local = true);
  // Removes the record with `key`; false when there is none.
  bool remove(const AttachmentKey& key);

  // nullopt when `source` is outside every registered network: such a query gets no answer.
  std::optional<Scope> scope_for(const IpAddr& source) const;
  // `name` normalized. kNxDomain for a missing name under a scope network's domain, which is
  // ours to answer; kNotLocal for anything else we do not know.
  Resolution resolve(const Scope& scope, std::string_view name) const;
  // The target of a PTR query (`name` normalized, "....in-addr.arpa"), within the scope.
  std::optional<std::string> resolve_ptr(const Scope& scope, std::string_view name) const;
  // Forwarding is allowed when any network in scope is not internal.
  bool may_forward(const Scope& scope) const;
  uint32_t ttl(const Scope& scope) const;  // the smallest ttl of the scope's networks
  std::vector<Upstream> network_upstreams(const Scope& scope) const;
  // Changes whenever anything an answer for `scope` depends on changes (the reply cache's
  // validity stamp): the largest generation of its networks and container.
  uint64_t stamp(const Scope& scope) const;

  // Indices stay valid for the index's life; a network without records has records == 0.
  const std::vector<NetworkView>& networks() const { return networks_; }
  // Every (gateway, port) to listen on, with the networks served there (network -> records).
  const std::map<ListenKey, std::map<uint32_t, uint32_t>>& listeners() const { return listeners_; }
  const std::vector<IpAddr>& listen_addresses() const { return listen_addresses_; }
  size_t size() const { return records_.size(); }

 private:
  struct Entry {  // what one record contributed, to take it back
    uint64_t id = 0;
    uint64_t serial = 0;
    bool local = true;
    uint32_t network = 0;
    std::pair<std::string, std::string> container;  // (node, id)
    std::vector<std::string> names;
    std::vector<Prefix> addresses;
    std::string primary;  // the PTR target
    std::vector<ListenKey> listen;
    std::vector<std::string> upstreams;
    std::vector<std::string> container_aliases;
  };

  void lookup_networks(const Scope& scope, std::string_view name, std::vector<IpAddr>* out,
                       bool* found) const;
  uint32_t network_index(const std::string& name);
  // remove()'s parts: what one of the record's addresses and its listeners contributed.
  void remove_address(const Entry& e, NetworkView& net, ContainerView* c, const Prefix& p);
  void remove_listeners(const Entry& e);
  void refresh_settings(NetworkView& net);
  void refresh_container(ContainerView& c);
  uint64_t bump() { return ++gen_; }

  uint16_t default_port_;
  uint64_t gen_ = 0;
  uint64_t next_id_ = 0;
  std::vector<NetworkView> networks_;
  std::unordered_map<std::string, uint32_t> network_by_name_;
  std::map<AttachmentKey, Entry> records_;
  std::map<std::pair<std::string, std::string>, ContainerView> containers_;
  // Container address -> containers (first wins), pointers into containers_ (stable nodes).
  std::unordered_map<IpAddr, std::vector<ContainerView*>, IpHash> by_source_;
  std::map<ListenKey, std::map<uint32_t, uint32_t>> listeners_;
  std::map<IpAddr, uint32_t> listen_refs_;
  std::vector<IpAddr> listen_addresses_;
};

// "5.0.1.10.in-addr.arpa" / "....ip6.arpa" for an address (via ldns), normalized.
std::string reverse_name(const IpAddr& ip);

}  // namespace cni::dns
