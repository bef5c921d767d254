#include "common/cluster.h"

#include <unistd.h>

#include "common/error.h"
#include "common/files.h"
#include "common/netconf.h"

namespace cni::cluster {

namespace {

using json = nlohmann::json;

std::string absolute_path(const json& j, std::string_view key, const std::string& where,
                          const std::string& fallback) {
  auto v = get_string(j, key, where);
  if (!v) return fallback;
  if (v->empty() || (*v)[0] != '/') {
    throw_config(key_path(where, key) + " must be an absolute path, got \"" + *v + "\"");
  }
  return *v;
}

// A TLS file must exist and be readable now: a typo found at the first etcd request would be
// reported as "etcd unreachable", which sends the operator the wrong way.
std::string tls_file(const json& tls, std::string_view key, const std::string& where,
                     bool required) {
  auto v = get_string(tls, key, where);
  if (!v || v->empty()) {
    if (required) throw_config(key_path(where, key) + " is required");
    return {};
  }
  if (::access(v->c_str(), R_OK) != 0) {
    throw_config(key_path(where, key) + ": cannot read " + *v);
  }
  return *v;
}

}  // namespace

bool valid_node_name(std::string_view name) {
  if (name.empty() || name.size() > 63 || name[0] == '.' || name[0] == '-') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

// "etcd": the endpoint URLs, without trailing slashes.
std::vector<std::string> parse_endpoints(const json& j, const std::string& where) {
  const json* endpoints = get_array(j, "etcd", where);
  if (!endpoints || endpoints->empty()) {
    throw_config(key_path(where, "etcd") + " must list at least one endpoint");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < endpoints->size(); ++i) {
    std::string k = key_path(where, "etcd") + "[" + std::to_string(i) + "]";
    const json& e = (*endpoints)[i];
    if (!e.is_string()) throw_config(k + " must be a string");
    std::string url = e.get<std::string>();
    bool http = url.starts_with("http://"), https = url.starts_with("https://");
    size_t host_at = http ? 7 : 8;
    if ((!http && !https) || url.size() <= host_at || url.find_first_of(" \t\r\n") != url.npos) {
      throw_config(k + " must be an http:// or https:// URL, got \"" + url + "\"");
    }
    while (url.ends_with("/")) url.pop_back();
    out.push_back(url);
  }
  return out;
}

// "node" and "address": who this host is in the cluster.
void parse_identity(ClusterConfig& c, const json& j, const std::string& where) {
  auto node = get_string(j, "node", where);
  if (!node) throw_config(key_path(where, "node") + " is required");
  if (!valid_node_name(*node)) {
    throw_config(key_path(where, "node") + " must be 1-63 of [A-Za-z0-9._-], got \"" + *node +
                 "\"");
  }
  c.node = *node;

  auto address = get_string(j, "address", where);
  if (!address) throw_config(key_path(where, "address") + " is required");
  auto ip = IpAddr::parse(*address);
  if (!ip || ip->is_zero()) {
    throw_config(key_path(where, "address") + " must be an IP address, got \"" + *address + "\"");
  }
  c.address = ip->unmapped();
}

std::optional<Tls> parse_tls(const json& j, const std::string& where) {
  const json* tls = get_object(j, "tls", where);
  if (!tls) return std::nullopt;
  std::string w = key_path(where, "tls");
  Tls t;
  t.cert = tls_file(*tls, "cert", w, false);
  t.key = tls_file(*tls, "key", w, !t.cert.empty());
  t.ca = tls_file(*tls, "ca", w, false);
  if (t.cert.empty() && !t.key.empty()) throw_config(key_path(w, "cert") + " is required");
  return t;
}

}  // namespace

ClusterConfig ClusterConfig::parse(const json& j, const std::string& where) {
  if (!j.is_object()) throw_config(where + " must be a JSON object");
  ClusterConfig c;
  c.path = where;
  c.etcd = parse_endpoints(j, where);
  parse_identity(c, j, where);
  c.tls = parse_tls(j, where);
  if (auto p = get_string(j, "prefix", where)) {
    std::string prefix = *p;
    while (prefix.size() > 1 && prefix.ends_with("/")) prefix.pop_back();
    if (prefix.size() < 2 || prefix[0] != '/') {
      throw_config(key_path(where, "prefix") + " must start with '/' and name something, got \"" +
                   *p + "\"");
    }
    c.prefix = prefix;
  }
  c.agent_socket = absolute_path(j, "agentSocket", where, kDefaultAgentSocket);
  c.state_dir = absolute_path(j, "stateDir", where, kDefaultStateDir);
  c.overlay_dir = absolute_path(j, "overlayDir", where, kDefaultOverlayDir);
  c.lease_ttl = static_cast<int>(get_int(j, "leaseTTL", where, 2, 3600).value_or(kDefaultLeaseTtl));
  c.timeout_ms =
      static_cast<int>(get_int(j, "timeoutMs", where, 50, 60000).value_or(kDefaultTimeoutMs));
  return c;
}

ClusterConfig ClusterConfig::load(const std::string& path) {
  auto text = read_file(path);
  if (!text) throw_config("cluster: cannot read the cluster file " + path);
  json j = parse_bounded(*text);
  if (j.is_discarded()) throw_config("cluster: " + path + " is not valid JSON");
  ClusterConfig c = parse(j, "cluster");
  c.path = path;
  return c;
}

std::string ClusterConfig::key(std::string_view rest) const {
  std::string k = prefix;
  k += '/';
  k += rest;
  return k;
}

std::optional<ClusterConfig> from_plugin_conf(const json& obj, std::string_view where) {
  const json* v = find_key(obj, "cluster");
  std::string k = key_path(where, "cluster");
  if (!v || (v->is_boolean() && !v->get<bool>())) return std::nullopt;
  std::string path;
  if (v->is_boolean()) {
    path = kDefaultFile;
  } else if (v->is_string() && !v->get<std::string>().empty()) {
    path = v->get<std::string>();
  } else {
    throw_config(k + " must be true or the path of a cluster file");
  }
  auto text = read_file(path);
  if (!text) throw_config(k + ": cannot read the cluster file " + path);
  json j = parse_bounded(*text);
  if (j.is_discarded()) throw_config(k + ": " + path + " is not valid JSON");
  ClusterConfig c = ClusterConfig::parse(j, k);
  c.path = path;
  return c;
}

}  // namespace cni::cluster
