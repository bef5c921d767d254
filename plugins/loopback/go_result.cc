#include "plugins/loopback/go_result.h"

#include <cstdint>
#include <string_view>

namespace cni::loopback {

namespace {

using ojson = nlohmann::ordered_json;

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one (Go decodes such a byte
// as utf8.RuneError of width 1). Overlong forms, surrogates and code points past U+10FFFF are
// invalid, as in Go's unicode/utf8.
size_t utf8_len(std::string_view s, size_t i) {
  auto at = [&](size_t k) -> int {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : -1;
  };
  auto cont = [&](size_t k, int lo = 0x80, int hi = 0xbf) {
    int c = at(k);
    return c >= lo && c <= hi;
  };
  int b = at(0);
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b >= 0xf1 && b <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// encoding/json's encodeState.string with HTML escaping on (what Marshal does).
void quote(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (b == '"' || b == '\\') {
        out += '\\';
        out += static_cast<char>(b);
      } else if (b == '\n') {
        out += "\\n";
      } else if (b == '\r') {
        out += "\\r";
      } else if (b == '\t') {
        out += "\\t";
      } else if (b < 0x20 || b == '<' || b == '>' || b == '&') {
        out += "\\u00";
        out += kHex[b >> 4];
        out += kHex[b & 0xf];
      } else {
        out += static_cast<char>(b);
      }
      ++i;
      continue;
    }
    size_t n = utf8_len(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    std::string_view seq = s.substr(i, n);
    if (seq == "\xe2\x80\xa8") {
      out += "\\u2028";
    } else if (seq == "\xe2\x80\xa9") {
      out += "\\u2029";
    } else {
      out += seq;
    }
    i += n;
  }
  out += '"';
}

void indent(std::string& out, int depth) { out.append(static_cast<size_t>(depth) * 4, ' '); }

void marshal(std::string& out, const ojson& v, int depth) {
  switch (v.type()) {
    case ojson::value_t::object: {
      if (v.empty()) {
        out += "{}";
        return;
      }
      out += "{\n";
      size_t i = 0;
      for (const auto& [key, value] : v.items()) {
        indent(out, depth + 1);
        quote(out, key);
        out += ": ";
        marshal(out, value, depth + 1);
        out += ++i < v.size() ? ",\n" : "\n";
      }
      indent(out, depth);
      out += '}';
      return;
    }
    case ojson::value_t::array: {
      if (v.empty()) {
        out += "[]";
        return;
      }
      out += "[\n";
      size_t i = 0;
      for (const auto& value : v) {
        indent(out, depth + 1);
        marshal(out, value, depth + 1);
        out += ++i < v.size() ? ",\n" : "\n";
      }
      indent(out, depth);
      out += ']';
      return;
    }
    case ojson::value_t::string:
      quote(out, v.get_ref<const std::string&>());
      return;
    default:
      // Booleans, integers and null print the same in both; results carry no floats.
      out += v.dump();
      return;
  }
}

ojson dns_of(const Dns& d) {
  ojson j = ojson::object();
  if (!d.nameservers.empty()) j["nameservers"] = d.nameservers;
  if (!d.domain.empty()) j["domain"] = d.domain;
  if (!d.search.empty()) j["search"] = d.search;
  if (!d.options.empty()) j["options"] = d.options;
  return j;
}

// types.Route; the 1.1 fields are ints with omitempty (0 is omitted) and *int (nil is omitted).
ojson route_of(const Route& r, bool v11) {
  ojson j;
  j["dst"] = r.dst.str();
  if (r.gw) j["gw"] = r.gw->str();
  if (v11) {
    if (r.mtu.value_or(0) != 0) j["mtu"] = *r.mtu;
    if (r.advmss.value_or(0) != 0) j["advmss"] = *r.advmss;
    if (r.priority.value_or(0) != 0) j["priority"] = *r.priority;
    if (r.table) j["table"] = *r.table;
    if (r.scope) j["scope"] = *r.scope;
  }
  return j;
}

// types/020: the first address of each family in its own block, with that family's routes.
ojson legacy_of(const Result& r, const std::string& cni_version) {
  ojson j;
  if (!cni_version.empty()) j["cniVersion"] = cni_version;
  for (bool v4 : {true, false}) {
    for (const auto& ip : r.ips) {
      if (ip.address.addr().is_v4() != v4) continue;
      ojson block;
      block["ip"] = ip.address.str();
      if (ip.gateway) block["gateway"] = ip.gateway->str();
      ojson routes = ojson::array();
      for (const auto& route : r.routes) {
        if (route.dst.addr().is_v4() == v4) routes.push_back(route_of(route, false));
      }
      if (!routes.empty()) block["routes"] = std::move(routes);
      j[v4 ? "ip4" : "ip6"] = std::move(block);
      break;
    }
  }
  j["dns"] = dns_of(r.dns);
  return j;
}

}  // namespace

GoType go_type_of(const std::string& version) {
  if (version.empty() || version == "0.1.0" || version == "0.2.0") return GoType::k020;
  if (version == "0.3.0" || version == "0.3.1" || version == "0.4.0") return GoType::k040;
  if (version == "1.0.0") return GoType::k100;
  return GoType::k110;
}

std::string go_result_text(const Result& r, const std::string& cni_version, GoType type) {
  if (type == GoType::k020) return go_marshal_indent(legacy_of(r, cni_version));
  const bool v11 = type == GoType::k110;
  ojson j;
  if (!cni_version.empty()) j["cniVersion"] = cni_version;
  if (!r.interfaces.empty()) {
    ojson list = ojson::array();
    for (const auto& i : r.interfaces) {
      ojson e;
      e["name"] = i.name;
      if (!i.mac.empty()) e["mac"] = i.mac;
      if (v11 && i.mtu.value_or(0) != 0) e["mtu"] = *i.mtu;
      if (!i.sandbox.empty()) e["sandbox"] = i.sandbox;
      if (v11 && !i.socket_path.empty()) e["socketPath"] = i.socket_path;
      if (v11 && !i.pci_id.empty()) e["pciID"] = i.pci_id;
      list.push_back(std::move(e));
    }
    j["interfaces"] = std::move(list);
  }
  if (!r.ips.empty()) {
    ojson list = ojson::array();
    for (const auto& ip : r.ips) {
      ojson e;
      if (type == GoType::k040) e["version"] = ip.address.addr().is_v4() ? "4" : "6";
      if (ip.interface) e["interface"] = *ip.interface;
      e["address"] = ip.address.str();
      if (ip.gateway) e["gateway"] = ip.gateway->str();
      list.push_back(std::move(e));
    }
    j["ips"] = std::move(list);
  }
  if (!r.routes.empty()) {
    ojson list = ojson::array();
    for (const auto& route : r.routes) list.push_back(route_of(route, v11));
    j["routes"] = std::move(list);
  }
  j["dns"] = dns_of(r.dns);
  return go_marshal_indent(j);
}

std::string go_marshal_indent(const nlohmann::ordered_json& v) {
  std::string out;
  marshal(out, v, 0);
  return out;
}

}  // namespace cni::loopback
