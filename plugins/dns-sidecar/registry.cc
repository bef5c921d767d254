#include "plugins/dns-sidecar/registry.h"

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/files.h"
#include "common/netconf.h"
#include "plugins/dns-sidecar/names.h"
#include "plugins/dns-sidecar/upstream.h"

namespace cni::dns {

namespace {

std::vector<std::string> strings(const json& j, const char* key) {
  return get_string_list(j, key, "record").value_or(std::vector<std::string>{});
}

template <class T, class F>
std::vector<T> parse_all(const json& j, const char* key, F parse) {
  std::vector<T> out;
  for (const auto& s : strings(j, key)) {
    auto v = parse(s);
    if (!v) throw_config(std::string("record.") + key + ": invalid address \"" + s + "\"");
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
  r.key = {req("network"), req("containerID"), req("ifname")};
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

void Registry::replace_network(const std::string& network, std::vector<Record> records) {
  std::erase_if(records_, [&](const auto& kv) { return kv.first.network == network; });
  for (auto& r : records) upsert(std::move(r));
}

RecordStore::RecordStore(std::string state_dir) : dir_(std::move(state_dir) + "/records") {}

std::string RecordStore::path(const AttachmentKey& key) const {
  return dir_ + "/" + key.network + "@" + key.container_id + "@" + key.ifname + ".json";
}

void RecordStore::save(const Record& r) const {
  ensure_dir(dir_, 0700);
  // Atomic but not durable: a registration describes a running container, and neither survives
  // a power loss. A daemon crash loses nothing (the page cache has it); two fsyncs would cost
  // ~15 ms per ADD on a disk-backed /run. An empty file left by a power loss is skipped on load.
  atomic_replace(path(r.key), r.to_json().dump(), 0600);
}

bool RecordStore::remove(const AttachmentKey& key) const { return remove_file(path(key)); }

std::optional<Record> RecordStore::load(const AttachmentKey& key) const {
  auto text = read_file(path(key));
  if (!text) return std::nullopt;
  return Record::from_json(json::parse(*text));
}

std::vector<AttachmentKey> RecordStore::list(const std::optional<std::string>& network) const {
  std::vector<AttachmentKey> out;
  for (const auto& f : list_dir(dir_)) {
    constexpr std::string_view kExt = ".json";
    // Skips the hidden temp files of atomic_write and anything else that is not a record.
    if (f[0] == '.' || f.size() <= kExt.size() || !f.ends_with(kExt)) continue;
    auto a = f.find('@');
    auto b = a == std::string::npos ? a : f.find('@', a + 1);
    if (b == std::string::npos) continue;
    AttachmentKey k{f.substr(0, a), f.substr(a + 1, b - a - 1),
                    f.substr(b + 1, f.size() - b - 1 - kExt.size())};
    if (!network || k.network == *network) out.push_back(std::move(k));
  }
  return out;
}

std::vector<Record> RecordStore::load_all(const std::optional<std::string>& network) const {
  std::vector<Record> out;
  for (const auto& k : list(network)) {
    try {
      if (auto r = load(k)) out.push_back(std::move(*r));
    } catch (const std::exception& e) {
      spdlog::error("skipping record {}: {}", path(k), e.what());
    }
  }
  return out;
}

}  // namespace cni::dns
