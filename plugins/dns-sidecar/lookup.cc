#include "plugins/dns-sidecar/lookup.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "common/push_unique.h"
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

std::vector<Upstream> parse_upstreams(const std::vector<std::string>& texts) {
  std::vector<Upstream> out;
  for (const auto& t : texts) {
    if (auto u = parse_upstream(t)) push_unique(out, *u);
  }
  return out;
}

// `network` as a DNS label for the `<name>.<network>` form, or "" (warned about once per daemon).
std::string network_label(const std::string& network) {
  auto reason = invalid_name_reason(network);
  if (!reason && network.find('.') != std::string::npos) reason = "it has more than one label";
  if (!reason) return normalize_name(network);
  static std::mutex mu;
  static std::set<std::string> warned;
  const std::lock_guard lock(mu);
  if (warned.insert(network).second) {
    spdlog::warn("network \"{}\" is not a DNS label ({}): <name>.<network> is not answered on it",
                 network, *reason);
  }
  return {};
}

// The keys `name` may be registered under on `net`: the name itself, without the network's
// domain, and without Docker's ".<network>".
std::vector<std::string_view> keys_on(const NetworkView& net, std::string_view name) {
  std::vector<std::string_view> keys = {name};
  if (auto s = strip_domain(name, net.settings.domain); s && !s->empty()) keys.push_back(*s);
  if (auto s = strip_domain(name, net.label); s && !s->empty()) keys.push_back(*s);
  return keys;
}

}  // namespace

Index Index::build(const Registry& registry, uint16_t default_port) {
  Index ix(default_port);
  for (const auto& [key, r] : registry.records()) ix.add(r);
  return ix;
}

uint32_t Index::network_index(const std::string& name) {
  auto [it, added] = network_by_name_.try_emplace(name, static_cast<uint32_t>(networks_.size()));
  if (added) {
    NetworkView& net = networks_.emplace_back();
    net.name = name;
    net.label = network_label(name);
  }
  return it->second;
}

void Index::refresh_settings(NetworkView& net) {
  net.gen = bump();
  if (net.settings_by_record.empty()) return;  // keeps the last settings; nobody asks
  const NetworkSettings& s = net.settings_by_record.rbegin()->second;
  net.settings = s;
  net.upstreams = parse_upstreams(s.upstreams);
}

// A container is made of its attachments (one record per network and interface); its view is
// recomputed from those few records whenever one of them changes.
void Index::refresh_container(ContainerView& c) {
  c.gen = bump();
  c.networks.clear();
  c.addresses.clear();
  c.upstreams.clear();
  c.aliases.clear();
  for (const auto& key : c.records) {
    const Entry& e = records_.at(key);
    push_unique(c.networks, e.network);
    for (const auto& u : parse_upstreams(e.upstreams)) push_unique(c.upstreams, u);
    for (const auto& a : e.container_aliases) {
      auto eq = a.find('=');
      c.aliases[normalize_name(a.substr(0, eq))] =
          eq == std::string::npos ? "" : normalize_name(a.substr(eq + 1));
    }
    for (const auto& p : e.addresses) push_unique(c.addresses, p.addr());
  }
}

void Index::add(const Record& r, bool local) {
  remove(r.key);
  Entry e;
  e.id = ++next_id_;
  e.serial = r.serial;
  e.local = local;
  e.network = network_index(r.key.network);
  e.container = {r.key.node, r.key.container_id};
  e.names = r.network_names();
  e.addresses = r.addresses;
  e.upstreams = r.upstreams;
  e.container_aliases = r.container_aliases;
  NetworkView& net = networks_[e.network];
  net.records++;
  net.settings_by_record.emplace(std::tuple{local, e.serial, e.id}, r.net);
  refresh_settings(net);

  std::string primary = !r.name.empty() ? r.name : r.hostname;
  if (primary.empty() && !r.aliases.empty()) primary = r.aliases.front();
  primary = normalize_name(primary);
  if (!primary.empty() && !net.settings.domain.empty()) primary += "." + net.settings.domain;
  e.primary = primary;

  auto [cit, cadded] = containers_.try_emplace(e.container);
  ContainerView& c = cit->second;
  if (cadded) {
    c.node = r.key.node;
    c.id = r.key.container_id;
    c.uid = ++next_id_;
  }
  c.records.push_back(r.key);
  for (const auto& p : r.addresses) {
    const IpAddr& ip = p.addr();
    if (net.subnet_refs[p.network()]++ == 0) net.subnets.push_back(p.network());
    push_unique(by_source_[ip], &c);
    for (const auto& n : e.names) net.names[n].emplace_back(ip, e.id);
    if (!primary.empty()) {
      auto& v = net.ptr[reverse_name(ip)];
      std::tuple<uint64_t, uint64_t, std::string> t{e.serial, e.id, primary};
      v.insert(std::upper_bound(v.begin(), v.end(), t), std::move(t));
    }
  }
  for (const auto& gw : r.gateways) {
    ListenKey k{gw, r.net.port.value_or(default_port_)};
    if (std::find(e.listen.begin(), e.listen.end(), k) != e.listen.end()) continue;
    e.listen.push_back(k);
    listeners_[k][e.network]++;
    if (listen_refs_[gw]++ == 0) listen_addresses_.push_back(gw);
  }
  records_.emplace(r.key, std::move(e));
  refresh_container(c);
}

void Index::remove_address(const Entry& e, NetworkView& net, ContainerView* c, const Prefix& p) {
  const IpAddr& ip = p.addr();
  if (auto s = net.subnet_refs.find(p.network()); s != net.subnet_refs.end() && --s->second == 0) {
    net.subnet_refs.erase(s);
    std::erase(net.subnets, p.network());
  }
  for (const auto& n : e.names) {
    auto nit = net.names.find(n);
    if (nit == net.names.end()) continue;
    std::erase_if(nit->second, [&](const auto& x) { return x.second == e.id; });
    if (nit->second.empty()) net.names.erase(nit);
  }
  if (!e.primary.empty()) {
    auto pit = net.ptr.find(reverse_name(ip));
    if (pit != net.ptr.end()) {
      std::erase_if(pit->second, [&](const auto& x) { return std::get<1>(x) == e.id; });
      if (pit->second.empty()) net.ptr.erase(pit);
    }
  }
  // The container may still have this address through another attachment.
  bool still = false;
  for (const auto& k : c->records) {
    for (const auto& q : records_.at(k).addresses) still = still || q.addr() == ip;
  }
  if (!still) {
    auto sit = by_source_.find(ip);
    if (sit != by_source_.end()) {
      std::erase(sit->second, c);
      if (sit->second.empty()) by_source_.erase(sit);
    }
  }
}

void Index::remove_listeners(const Entry& e) {
  for (const auto& k : e.listen) {
    auto lit = listeners_.find(k);
    if (lit != listeners_.end()) {
      if (--lit->second[e.network] == 0) lit->second.erase(e.network);
      if (lit->second.empty()) listeners_.erase(lit);
    }
    if (auto g = listen_refs_.find(k.addr); g != listen_refs_.end() && --g->second == 0) {
      listen_refs_.erase(g);
      std::erase(listen_addresses_, k.addr);
    }
  }
}

bool Index::remove(const AttachmentKey& key) {
  auto it = records_.find(key);
  if (it == records_.end()) return false;
  Entry e = std::move(it->second);
  records_.erase(it);
  NetworkView& net = networks_[e.network];
  net.records--;
  net.settings_by_record.erase(std::tuple{e.local, e.serial, e.id});
  auto cit = containers_.find(e.container);
  ContainerView* c = &cit->second;
  std::erase(c->records, key);
  for (const auto& p : e.addresses) remove_address(e, net, c, p);
  remove_listeners(e);
  refresh_settings(net);
  if (c->records.empty()) {
    containers_.erase(cit);
  } else {
    refresh_container(*c);
  }
  return true;
}

uint64_t Index::stamp(const Scope& scope) const {
  uint64_t s = scope.container ? scope.container->gen : 0;
  for (uint32_t ni : scope.networks) s = std::max(s, networks_[ni].gen);
  return s;
}

std::optional<Scope> Index::scope_for(const IpAddr& source) const {
  if (auto it = by_source_.find(source); it != by_source_.end()) {
    const ContainerView& c = *it->second.front();
    return Scope{c.networks, &c};
  }
  Scope s;
  for (uint32_t i = 0; i < networks_.size(); ++i) {
    if (networks_[i].records == 0) continue;
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
    for (std::string_view key : keys_on(net, name)) {
      auto it = net.names.find(key);
      if (it == net.names.end()) continue;
      *found = true;
      for (const auto& [ip, id] : it->second) push_unique(*out, ip);
    }
  }
}

Resolution Index::resolve(const Scope& scope, std::string_view name) const {
  Resolution res;
  bool found = false;
  if (scope.container && !scope.container->aliases.empty()) {
    std::vector<std::string_view> keys;
    for (uint32_t ni : scope.networks) {
      for (auto key : keys_on(networks_[ni], name)) push_unique(keys, key);
    }
    if (keys.empty()) keys.push_back(name);
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
    if (auto it = ptr.find(name); it != ptr.end()) return std::get<2>(it->second.front());
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
