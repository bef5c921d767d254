#pragma once
// The CNI Result (SPEC.md §5) and its JSON in every version we speak. Internally one shape;
// versions differ only on the wire: 0.3.x and 0.4.0 carry ips[].version, 1.0.0+ do not.
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"

namespace cni {

using json = nlohmann::json;

inline constexpr const char* kCurrentVersion = "1.1.0";
// Versions a config may name; the order is the one VERSION reports.
const std::vector<std::string>& supported_versions();
bool is_supported_version(const std::string& version);
// Compares dotted versions numerically: <0, 0, >0. Unparsable parts count as 0.
int compare_versions(const std::string& a, const std::string& b);

struct Interface {
  std::string name;
  std::string mac;
  std::optional<int> mtu;
  std::string sandbox;
  std::string socket_path;
  std::string pci_id;
};

struct IpConfig {
  Prefix address;
  std::optional<IpAddr> gateway;
  std::optional<int> interface;  // index into Result::interfaces
};

struct Route {
  Prefix dst;
  std::optional<IpAddr> gw;
  std::optional<int> mtu;
  std::optional<int> advmss;
  std::optional<int> priority;
  std::optional<int> table;
  std::optional<int> scope;
};

struct Dns {
  std::vector<std::string> nameservers;
  std::string domain;
  std::vector<std::string> search;
  std::vector<std::string> options;
  bool empty() const {
    return nameservers.empty() && domain.empty() && search.empty() && options.empty();
  }
};

struct Result {
  std::vector<Interface> interfaces;
  std::vector<IpConfig> ips;
  std::vector<Route> routes;
  Dns dns;

  // Parses a result in any supported version (and the legacy ip4/ip6 shape of 0.1/0.2).
  // Throws Error code 6 naming the field when the JSON has the wrong shape.
  static Result from_json(const json& j);
  // Writes the result as `version` expects it.
  json to_json(const std::string& version) const;

  // Index of the interface called `name` that has a sandbox (the container side), if any.
  std::optional<int> container_interface(const std::string& name) const;
};

Dns dns_from_json(const json& j);
json dns_to_json(const Dns& dns);
Route route_from_json(const json& j);
json route_to_json(const Route& r);

}  // namespace cni
