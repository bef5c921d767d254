#include "common/types.h"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace cni {

const std::vector<std::string>& supported_versions() {
  static const std::vector<std::string> kVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return kVersions;
}

bool is_supported_version(const std::string& version) {
  for (const auto& v : supported_versions()) {
    if (v == version) {
      return true;
    }
  }
  return false;
}

int compare_versions(const std::string& a, const std::string& b) {
  size_t i = 0;
  size_t j = 0;
  // A component's digits saturate at kCap: a 30-digit component of an outside version string
  // compares as large instead of overflowing.
  static constexpr long kCap = 1'000'000'000'000;
  auto component = [](const std::string& s, size_t& k) {
    long v = 0;
    for (; k < s.size() && s[k] != '.'; ++k) {
      if (s[k] >= '0' && s[k] <= '9') v = std::min(v * 10 + (s[k] - '0'), kCap);
    }
    return v;
  };
  while (i < a.size() || j < b.size()) {
    long x = component(a, i);
    long y = component(b, j);
    if (x != y) {
      return x < y ? -1 : 1;
    }
    ++i;
    ++j;
  }
  return 0;
}

namespace {

[[noreturn]] void bad_result(const std::string& what) {
  throw Error(kErrDecode, "failed to decode result", what);
}

std::string str_field(const json& j, const char* key, const char* where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return {};
  }
  if (!it->is_string()) {
    bad_result(std::string(where) + "." + key + " must be a string");
  }
  return it->get<std::string>();
}

std::optional<int> int_field(const json& j, const char* key, const char* where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return std::nullopt;
  }
  // get<int>() would wrap 4294967296 to 0: anything outside int's range is refused.
  if (!it->is_number_integer() || (it->is_number_unsigned() ? it->get<uint64_t>() > INT32_MAX
                                                            : it->get<int64_t>() < INT32_MIN ||
                                                                  it->get<int64_t>() > INT32_MAX)) {
    bad_result(std::string(where) + "." + key + " must be an integer (32 bits)");
  }
  return static_cast<int>(it->get<int64_t>());
}

std::vector<std::string> str_list(const json& j, const char* key, const char* where) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return out;
  }
  if (!it->is_array()) {
    bad_result(std::string(where) + "." + key + " must be a list of strings");
  }
  for (const auto& e : *it) {
    if (!e.is_string()) {
      bad_result(std::string(where) + "." + key + " must be a list of strings");
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

Prefix prefix_field(const json& j, const char* key, const char* where) {
  std::string s = str_field(j, key, where);
  auto p = Prefix::parse(s);
  if (!p) {
    bad_result(std::string(where) + "." + key + " is not a CIDR: \"" + s + "\"");
  }
  return *p;
}

std::optional<IpAddr> ip_field(const json& j, const char* key, const char* where) {
  std::string s = str_field(j, key, where);
  if (s.empty()) {
    return std::nullopt;
  }
  auto ip = IpAddr::parse(s);
  if (!ip) {
    bad_result(std::string(where) + "." + key + " is not an IP address: \"" + s + "\"");
  }
  return ip;
}

template <class T, class F>
std::vector<T> list_of(const json& j, const char* key, F parse) {
  std::vector<T> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return out;
  }
  if (!it->is_array()) {
    bad_result(std::string(key) + " must be a list");
  }
  // A result lists one attachment's interfaces, addresses and routes: dozens, not thousands.
  constexpr size_t kMaxEntries = 1024;
  if (it->size() > kMaxEntries) {
    bad_result(std::string(key) + ": " + std::to_string(it->size()) + " entries, at most " +
               std::to_string(kMaxEntries));
  }
  for (const auto& e : *it) {
    if (!e.is_object()) {
      bad_result(std::string(key) + " entries must be objects");
    }
    out.push_back(parse(e));
  }
  return out;
}

// Legacy 0.1.0/0.2.0 {"ip4": {"ip","gateway","routes"}} block.
void legacy_block(const json& j, const char* key, Result& r) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_object()) {
    return;
  }
  r.ips.push_back({prefix_field(*it, "ip", key), ip_field(*it, "gateway", key), std::nullopt});
  for (const auto& route : list_of<Route>(*it, "routes", route_from_json)) {
    r.routes.push_back(route);
  }
}

}  // namespace

Route route_from_json(const json& j) {
  Route r;
  r.dst = prefix_field(j, "dst", "routes[]");
  r.gw = ip_field(j, "gw", "routes[]");
  r.mtu = int_field(j, "mtu", "routes[]");
  r.advmss = int_field(j, "advmss", "routes[]");
  r.priority = int_field(j, "priority", "routes[]");
  r.table = int_field(j, "table", "routes[]");
  r.scope = int_field(j, "scope", "routes[]");
  return r;
}

json route_to_json(const Route& r) {
  json j = {{"dst", r.dst.str()}};
  if (r.gw) j["gw"] = r.gw->str();
  if (r.mtu) j["mtu"] = *r.mtu;
  if (r.advmss) j["advmss"] = *r.advmss;
  if (r.priority) j["priority"] = *r.priority;
  if (r.table) j["table"] = *r.table;
  if (r.scope) j["scope"] = *r.scope;
  return j;
}

Dns dns_from_json(const json& j) {
  Dns d;
  if (j.is_null()) {
    return d;
  }
  if (!j.is_object()) {
    bad_result("dns must be an object");
  }
  d.nameservers = str_list(j, "nameservers", "dns");
  d.domain = str_field(j, "domain", "dns");
  d.search = str_list(j, "search", "dns");
  d.options = str_list(j, "options", "dns");
  return d;
}

json dns_to_json(const Dns& d) {
  json j = json::object();
  if (!d.nameservers.empty()) j["nameservers"] = d.nameservers;
  if (!d.domain.empty()) j["domain"] = d.domain;
  if (!d.search.empty()) j["search"] = d.search;
  if (!d.options.empty()) j["options"] = d.options;
  return j;
}

Result Result::from_json(const json& j) {
  if (!j.is_object()) {
    bad_result("result must be an object");
  }
  Result r;
  r.interfaces = list_of<Interface>(j, "interfaces", [](const json& e) {
    // The spec makes "name" the one required member of an interface (types100.Interface has no
    // omitempty on it): a result printed without it is invalid in every version.
    std::string name = str_field(e, "name", "interfaces[]");
    if (name.empty()) bad_result("interfaces[].name is missing or empty");
    return Interface{std::move(name),
                     str_field(e, "mac", "interfaces[]"),
                     int_field(e, "mtu", "interfaces[]"),
                     str_field(e, "sandbox", "interfaces[]"),
                     str_field(e, "socketPath", "interfaces[]"),
                     str_field(e, "pciID", "interfaces[]")};
  });
  r.ips = list_of<IpConfig>(j, "ips", [&r](const json& e) {
    IpConfig ip{prefix_field(e, "address", "ips[]"), ip_field(e, "gateway", "ips[]"),
                int_field(e, "interface", "ips[]")};
    if (ip.interface &&
        (*ip.interface < 0 || *ip.interface >= static_cast<int>(r.interfaces.size()))) {
      bad_result("ips[].interface " + std::to_string(*ip.interface) + " is out of range");
    }
    return ip;
  });
  r.routes = list_of<Route>(j, "routes", route_from_json);
  if (auto it = j.find("dns"); it != j.end()) {
    r.dns = dns_from_json(*it);
  }
  legacy_block(j, "ip4", r);
  legacy_block(j, "ip6", r);
  return r;
}

json Result::to_json(const std::string& version) const {
  const bool with_ip_version = compare_versions(version, "1.0.0") < 0;
  json j = {{"cniVersion", version}};
  if (!interfaces.empty()) {
    json list = json::array();
    for (const auto& i : interfaces) {
      json e = {{"name", i.name}};
      if (!i.mac.empty()) e["mac"] = i.mac;
      if (i.mtu && !with_ip_version) e["mtu"] = *i.mtu;
      if (!i.sandbox.empty()) e["sandbox"] = i.sandbox;
      if (!i.socket_path.empty() && !with_ip_version) e["socketPath"] = i.socket_path;
      if (!i.pci_id.empty() && !with_ip_version) e["pciID"] = i.pci_id;
      list.push_back(std::move(e));
    }
    j["interfaces"] = std::move(list);
  }
  if (!ips.empty()) {
    json list = json::array();
    for (const auto& ip : ips) {
      json e = json::object();
      if (with_ip_version) e["version"] = ip.address.addr().is_v4() ? "4" : "6";
      if (ip.interface) e["interface"] = *ip.interface;
      e["address"] = ip.address.str();
      if (ip.gateway) e["gateway"] = ip.gateway->str();
      list.push_back(std::move(e));
    }
    j["ips"] = std::move(list);
  }
  if (!routes.empty()) {
    json list = json::array();
    for (const auto& r : routes) {
      list.push_back(route_to_json(r));
    }
    j["routes"] = std::move(list);
  }
  j["dns"] = dns_to_json(dns);
  return j;
}

std::optional<int> Result::container_interface(const std::string& name) const {
  for (size_t i = 0; i < interfaces.size(); ++i) {
    if (interfaces[i].name == name && !interfaces[i].sandbox.empty()) {
      return static_cast<int>(i);
    }
  }
  return std::nullopt;
}

}  // namespace cni
