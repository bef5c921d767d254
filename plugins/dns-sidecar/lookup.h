#pragma once
// The lookup tables the daemon answers from, rebuilt from the Registry after every change
// (registrations are rare, queries are many), and name resolution within a client's scope:
// a query sees the networks of the container that sent it, and that container's own aliases.
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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
  NetworkSettings settings;  // of the newest record
  std::vector<Upstream> upstreams;
  std::vector<Prefix> subnets;         // of the registered addresses: who may ask
  NameMap<std::vector<IpAddr>> names;  // normalized name -> addresses
  NameMap<std::string> ptr;            // reverse name -> name.<domain>
};

struct ContainerView {
  std::string id;
  std::vector<uint32_t> networks;  // indices into Index::networks()
  std::vector<IpAddr> addresses;
  std::vector<Upstream> upstreams;
  // Container-scoped aliases: alias -> target name, "" for the container itself.
  NameMap<std::string> aliases;
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

class Index {
 public:
  // `default_port` is the daemon's --port, for networks that do not name one.
  static Index build(const Registry& registry, uint16_t default_port);

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

  const std::vector<NetworkView>& networks() const { return networks_; }
  const std::vector<ContainerView>& containers() const { return containers_; }
  // Every (gateway, port) to listen on, with the networks served there.
  const std::map<ListenKey, std::vector<uint32_t>>& listeners() const { return listeners_; }
  const std::vector<IpAddr>& listen_addresses() const { return listen_addresses_; }

 private:
  void lookup_networks(const Scope& scope, std::string_view name, std::vector<IpAddr>* out,
                       bool* found) const;

  std::vector<NetworkView> networks_;
  std::vector<ContainerView> containers_;
  std::unordered_map<IpAddr, uint32_t, IpHash> by_source_;  // container address -> container
  std::map<ListenKey, std::vector<uint32_t>> listeners_;
  std::vector<IpAddr> listen_addresses_;
};

// "5.0.1.10.in-addr.arpa" / "....ip6.arpa" for an address (via ldns), normalized.
std::string reverse_name(const IpAddr& ip);

}  // namespace cni::dns
