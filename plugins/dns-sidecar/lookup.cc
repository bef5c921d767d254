#include "plugins/dns-sidecar/lookup.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "plugins/dns-sidecar/ldns_ptr.h"
#include "plugins/dns-sidecar/names.h"

namespace cni::dns {

size_t IpHash::operator()(const IpAddr& ip) const {
  // FNV-1a over the address bytes; cheap and good enough for container addresses.
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < ip.byte_len(); ++i) h = (h ^ ip.bytes()[i]) * 1099511628211ull;
  return static_cast<size_t>(h);
}

std::string reverse_name(const IpAddr& ip) {
  RdfPtr addr(ldns_rdf_new_frm_data(ip.is_v4() ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA,
                                    static_cast<size_t>(ip.byte_len()), ip.bytes()));
  RdfPtr rev(addr ? ldns_rdf_address_reverse(addr.get()) : nullptr);
  MallocPtr<char> text(rev ? ldns_rdf2str(rev.get()) : nullptr);
  return text ? normalize_name(text.get()) : std::string();
}

namespace {

template <class T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

std::vector<Upstream> parse_upstreams(const std::vector<std::string>& texts) {
  std::vector<Upstream> out;
  for (const auto& t : texts) {
    if (auto u = parse_upstream(t)) push_unique(out, *u);
  }
  return out;
}

}  // namespace

Index Index::build(const Registry& registry, uint16_t default_port) {
  Index ix;
  // Records by network, oldest first, so that the newest record's settings are applied last.
  std::map<std::string, std::vector<const Record*>> by_network;
  for (const auto& [key, r] : registry.records()) by_network[key.network].push_back(&r);
  std::unordered_map<std::string, uint32_t> container_index;
  for (auto& [name, records] : by_network) {
    std::stable_sort(records.begin(), records.end(),
                     [](const Record* a, const Record* b) { return a->serial < b->serial; });
    auto ni = static_cast<uint32_t>(ix.networks_.size());
    NetworkView& net = ix.networks_.emplace_back();
    net.name = name;
    net.settings = records.back()->net;
    net.upstreams = parse_upstreams(net.settings.upstreams);
    for (const Record* r : records) {
      auto [it, added] = container_index.try_emplace(r->key.container_id,
                                                     static_cast<uint32_t>(ix.containers_.size()));
      if (added) ix.containers_.emplace_back().id = r->key.container_id;
      ContainerView& c = ix.containers_[it->second];
      push_unique(c.networks, ni);
      for (const auto& u : parse_upstreams(r->upstreams)) push_unique(c.upstreams, u);
      for (const auto& a : r->container_aliases) {
        auto eq = a.find('=');
        c.aliases[normalize_name(a.substr(0, eq))] =
            eq == std::string::npos ? "" : normalize_name(a.substr(eq + 1));
      }
      std::string primary = !r->name.empty() ? r->name : r->hostname;
      if (primary.empty() && !r->aliases.empty()) primary = r->aliases.front();
      primary = normalize_name(primary);
      if (!primary.empty() && !net.settings.domain.empty()) primary += "." + net.settings.domain;
      auto names = r->network_names();
      for (const auto& p : r->addresses) {
        const IpAddr& ip = p.addr();
        push_unique(c.addresses, ip);
        push_unique(net.subnets, p.network());
        ix.by_source_.try_emplace(ip, it->second);
        for (const auto& n : names) push_unique(net.names[n], ip);
        if (!primary.empty()) net.ptr.try_emplace(reverse_name(ip), primary);
      }
      for (const auto& gw : r->gateways) {
        auto& nets = ix.listeners_[ListenKey{gw, r->net.port.value_or(default_port)}];
        push_unique(nets, ni);
        push_unique(ix.listen_addresses_, gw);
      }
    }
  }
  return ix;
}

std::optional<Scope> Index::scope_for(const IpAddr& source) const {
  if (auto it = by_source_.find(source); it != by_source_.end()) {
    const ContainerView& c = containers_[it->second];
    return Scope{c.networks, &c};
  }
  Scope s;
  for (uint32_t i = 0; i < networks_.size(); ++i) {
    for (const auto& subnet : networks_[i].subnets) {
      if (subnet.contains(source)) {
        push_unique(s.networks, i);
      }
    }
  }
  if (s.networks.empty()) return std::nullopt;
  return s;
}

void Index::lookup_networks(const Scope& scope, std::string_view name, std::vector<IpAddr>* out,
                            bool* found) const {
  for (uint32_t ni : scope.networks) {
    const NetworkView& net = networks_[ni];
    auto stripped = strip_domain(name, net.settings.domain);
    for (std::string_view key : {name, stripped.value_or(std::string_view{})}) {
      if (key.empty()) continue;
      auto it = net.names.find(key);
      if (it == net.names.end()) continue;
      *found = true;
      for (const auto& ip : it->second) push_unique(*out, ip);
    }
  }
}

Resolution Index::resolve(const Scope& scope, std::string_view name) const {
  Resolution res;
  bool found = false;
  if (scope.container && !scope.container->aliases.empty()) {
    std::vector<std::string_view> keys = {name};
    for (uint32_t ni : scope.networks) {
      if (auto s = strip_domain(name, networks_[ni].settings.domain)) keys.push_back(*s);
    }
    for (auto key : keys) {
      auto it = scope.container->aliases.find(key);
      if (it == scope.container->aliases.end()) continue;
      found = true;
      if (it->second.empty()) {
        for (const auto& ip : scope.container->addresses) push_unique(res.addresses, ip);
      } else {
        lookup_networks(scope, it->second, &res.addresses, &found);
      }
    }
  }
  lookup_networks(scope, name, &res.addresses, &found);
  if (found) {
    res.kind = Resolution::Kind::kFound;
  } else {
    for (uint32_t ni : scope.networks) {
      if (in_domain(name, networks_[ni].settings.domain)) res.kind = Resolution::Kind::kNxDomain;
    }
  }
  return res;
}

std::optional<std::string> Index::resolve_ptr(const Scope& scope, std::string_view name) const {
  for (uint32_t ni : scope.networks) {
    const auto& ptr = networks_[ni].ptr;
    if (auto it = ptr.find(name); it != ptr.end()) return it->second;
  }
  return std::nullopt;
}

bool Index::may_forward(const Scope& scope) const {
  return std::any_of(scope.networks.begin(), scope.networks.end(),
                     [this](uint32_t ni) { return !networks_[ni].settings.internal; });
}

uint32_t Index::ttl(const Scope& scope) const {
  uint32_t ttl = UINT32_MAX;
  for (uint32_t ni : scope.networks) ttl = std::min(ttl, networks_[ni].settings.ttl);
  return ttl == UINT32_MAX ? 0 : ttl;
}

std::vector<Upstream> Index::network_upstreams(const Scope& scope) const {
  std::vector<Upstream> out;
  for (uint32_t ni : scope.networks) {
    for (const auto& u : networks_[ni].upstreams) push_unique(out, u);
  }
  return out;
}

}  // namespace cni::dns
