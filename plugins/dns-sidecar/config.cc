#include "plugins/dns-sidecar/config.h"

#include "common/cluster.h"
#include "common/error.h"
#include "plugins/dns-sidecar/names.h"
#include "plugins/dns-sidecar/upstream.h"

namespace cni::dns {

namespace {

void check_name(const std::string& key, const std::string& name) {
  if (auto why = invalid_name_reason(name)) throw_config(key + ": \"" + name + "\": " + *why);
}

void check_servers(const std::string& key, const std::vector<std::string>& servers) {
  for (const auto& s : servers) {
    if (!parse_upstream(s)) throw_config(key + ": \"" + s + "\" is not an IP address");
  }
}

// podman sends {"<network>": ["alias", ...]}; the CNI convention is a plain list.
std::vector<std::string> aliases_of(const json& v, const std::string& network,
                                    const std::string& where) {
  if (v.is_array()) {
    json wrapped = {{"aliases", v}};
    return get_string_list(wrapped, "aliases", where).value_or(std::vector<std::string>{});
  }
  if (!v.is_object()) throw_config(where + ".aliases: expected a list or an object");
  return get_string_list(v, network, where + ".aliases").value_or(std::vector<std::string>{});
}

}  // namespace

Config Config::parse(const NetConf& conf, const CniArgs& cni_args) {
  const json& raw = conf.raw;
  Config c;
  c.network = conf.name;
  if (auto d = get_string(raw, "domainName")) {
    check_name("domainName", *d);
    c.domain = normalize_name(*d);
  }
  c.upstreams = get_string_list(raw, "upstreams").value_or(std::vector<std::string>{});
  check_servers("upstreams", c.upstreams);
  c.state_dir = get_state_dir(raw, kDefaultStateDir);
  c.socket = get_string(raw, "socket").value_or(c.state_dir + "/" + kSocketName);
  if (c.socket.empty() || c.socket[0] != '/') throw_config("socket: must be absolute");
  c.ttl = static_cast<uint32_t>(get_int(raw, "ttl", {}, 0, INT32_MAX).value_or(0));
  if (auto p = get_int(raw, "port", {}, 1, 65535)) c.port = static_cast<uint16_t>(*p);
  c.internal = get_bool(raw, "internal").value_or(false);
  c.resolv_conf = get_string(raw, "resolvConf").value_or("");
  c.log_file = get_string(raw, "logFile").value_or("");
  c.log_level = get_string(raw, "logLevel").value_or("");
  if (auto cl = cluster::from_plugin_conf(raw, "")) c.cluster_file = cl->path;

  c.name = cni_args.get("K8S_POD_NAME").value_or("");
  const json* cni = get_object(conf.args, "cni", "args");
  if (cni) {
    c.name = get_string(*cni, "name", "args.cni").value_or(c.name);
    c.hostname = get_string(*cni, "hostname", "args.cni").value_or("");
    if (const json* a = find_key(*cni, "aliases"))
      c.aliases = aliases_of(*a, c.network, "args.cni");
    c.container_aliases =
        get_string_list(*cni, "containerAliases", "args.cni").value_or(std::vector<std::string>{});
  }
  const json& rc = conf.runtime_config;
  if (const json* a = find_key(rc, "aliases"))
    c.aliases = aliases_of(*a, c.network, "runtimeConfig");
  if (const json* dns = get_object(rc, "dns", "runtimeConfig")) {
    // containerd sends Go field names ("Servers"); find_key matches them case-insensitively.
    auto list = [dns](const char* k) {
      return get_string_list(*dns, k, "runtimeConfig.dns").value_or(std::vector<std::string>{});
    };
    c.container_upstreams = list("servers");
    c.searches = list("searches");
    c.options = list("options");
    check_servers("runtimeConfig.dns.servers", c.container_upstreams);
  }

  if (!c.name.empty()) check_name("container name", c.name);
  if (!c.hostname.empty()) check_name("args.cni.hostname", c.hostname);
  for (const auto& a : c.aliases) check_name("aliases", a);
  for (const auto& a : c.container_aliases) {
    auto eq = a.find('=');
    check_name("args.cni.containerAliases", a.substr(0, eq));
    if (eq != std::string::npos) check_name("args.cni.containerAliases", a.substr(eq + 1));
  }
  c.valid_attachments = cni::valid_attachments(raw);
  return c;
}

}  // namespace cni::dns
