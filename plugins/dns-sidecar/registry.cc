#include "plugins/dns-sidecar/registry.h"

#include "common/error.h"
#include "common/netconf.h"
#include "plugins/dns-sidecar/names.h"
#include "plugins/dns-sidecar/upstream.h"

namespace cni::dns {

namespace {

std::vector<std::string> strings(const json& j, const char* key) {
  return get_string_list(j, key, "record").value_or(std::vector<std::string>{});
}

// Out of line: g++ 12 inlines the message's concatenations into parse_all and then warns
// (-Warray-bounds) about a string copy it cannot prove in bounds.
[[noreturn]] __attribute__((noinline)) void invalid_address(const char* key, const std::string& s) {
  throw_config(std::string("record.") + key + ": invalid address \"" + s + "\"");
}

template <class T, class F>
std::vector<T> parse_all(const json& j, const char* key, F parse) {
  std::vector<T> out;
  for (const auto& s : strings(j, key)) {
    auto v = parse(s);
    if (!v) invalid_address(key, s);
    out.push_back(*v);
  }
  return out;
}

template <class T>
json texts(const std::vector<T>& v) {
  json out = json::array();
  for (const auto& x : v) out.push_back(x.str());
  return out;
}

void check_name(const std::string& what, const std::string& name) {
  if (auto why = invalid_name_reason(name)) throw_config(what + " \"" + name + "\": " + *why);
}

}  // namespace

json Record::to_json() const {
  json j = {{"network", key.network},
            {"containerID", key.container_id},
            {"ifname", key.ifname},
            {"name", name},
            {"hostname", hostname},
            {"aliases", aliases},
            {"containerAliases", container_aliases},
            {"addresses", texts(addresses)},
            {"gateways", texts(gateways)},
            {"upstreams", upstreams},
            {"domain", net.domain},
            {"networkUpstreams", net.upstreams},
            {"internal", net.internal},
            {"ttl", net.ttl},
            {"serial", serial}};
  if (net.port) j["port"] = *net.port;
  if (!key.node.empty()) j["node"] = key.node;
  if (cluster) j["cluster"] = true;
  return j;
}

Record Record::from_json(const json& j) {
  if (!j.is_object()) throw_config("record: expected an object");
  Record r;
  auto req = [&j](const char* k) {
    auto v = get_string(j, k, "record");
    if (!v || v->empty()) throw_config(std::string("record.") + k + " is missing");
    return *v;
  };
  r.key = {{req("network"), req("containerID"), req("ifname")},
           get_string(j, "node", "record").value_or("")};
  r.name = get_string(j, "name", "record").value_or("");
  r.hostname = get_string(j, "hostname", "record").value_or("");
  r.aliases = strings(j, "aliases");
  r.container_aliases = strings(j, "containerAliases");
  r.addresses = parse_all<Prefix>(j, "addresses", [](const std::string& s) {
    return Prefix::parse(s, /*allow_bare_ip=*/true);
  });
  r.gateways =
      parse_all<IpAddr>(j, "gateways", [](const std::string& s) { return IpAddr::parse(s); });
  r.upstreams = strings(j, "upstreams");
  r.net.domain = normalize_name(get_string(j, "domain", "record").value_or(""));
  r.net.upstreams = strings(j, "networkUpstreams");
  r.net.internal = get_bool(j, "internal", "record").value_or(false);
  r.net.ttl = static_cast<uint32_t>(get_int(j, "ttl", "record", 0, INT32_MAX).value_or(0));
  if (auto p = get_int(j, "port", "record", 1, 65535)) r.net.port = static_cast<uint16_t>(*p);
  if (const json* s = find_key(j, "serial"); s && s->is_number_unsigned()) {
    r.serial = s->get<uint64_t>();
  }
  r.cluster = get_bool(j, "cluster", "record").value_or(false);
  r.validate();
  return r;
}

void Record::validate() const {
  if (!name.empty()) check_name("name", name);
  if (!hostname.empty()) check_name("hostname", hostname);
  for (const auto& a : aliases) check_name("alias", a);
  for (const auto& a : container_aliases) {
    auto eq = a.find('=');
    check_name("container alias", a.substr(0, eq));
    if (eq != std::string::npos) check_name("container alias target", a.substr(eq + 1));
  }
  if (!net.domain.empty()) check_name("domain", net.domain);
  for (const auto* list : {&upstreams, &net.upstreams}) {
    for (const auto& u : *list) {
      if (!parse_upstream(u)) throw_config("DNS server \"" + u + "\" is not an address");
    }
  }
}

std::vector<std::string> Record::network_names() const {
  std::vector<std::string> out;
  for (const auto* n : {&name, &hostname}) {
    if (!n->empty()) out.push_back(normalize_name(*n));
  }
  for (const auto& a : aliases) out.push_back(normalize_name(a));
  return out;
}

void Registry::upsert(Record r) {
  auto [it, added] = records_.try_emplace(r.key);
  if (added) per_node_[r.key.node]++;
  it->second = std::move(r);
}

bool Registry::erase(const AttachmentKey& key) {
  if (records_.erase(key) == 0) return false;
  if (--per_node_[key.node] == 0) per_node_.erase(key.node);
  return true;
}

void Registry::replace_network(const std::string& network, std::vector<Record> records) {
  std::vector<AttachmentKey> gone;
  for (const auto& [key, r] : records_) {
    if (key.network == network) gone.push_back(key);
  }
  for (const auto& k : gone) erase(k);
  for (auto& r : records) upsert(std::move(r));
}

const Record* Registry::find(const AttachmentKey& key) const {
  auto it = records_.find(key);
  return it == records_.end() ? nullptr : &it->second;
}

size_t Registry::count_of_node(const std::string& node) const {
  auto it = per_node_.find(node);
  return it == per_node_.end() ? 0 : it->second;
}

RecordStore::RecordStore(const std::string& state_dir)
    : AttachmentStore<Record>(state_dir + "/records", Durability::kKernelLifetime,
                              Legacy::kFlatAt) {}

std::vector<Record> RecordStore::load_all(const std::optional<std::string>& network) const {
  std::vector<Record> out;
  for (const cni::AttachmentKey& k : network ? list(*network) : list()) {
    if (auto r = load(k)) out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace cni::dns
