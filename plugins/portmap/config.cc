#include "plugins/portmap/config.h"

#include <strings.h>

#include <algorithm>
#include <cctype>

#include "common/error.h"
#include "common/push_unique.h"

namespace cni::portmap {

namespace {

std::string indexed(const std::string& where, size_t i) {
  return where + "[" + std::to_string(i) + "]";
}

[[noreturn]] void bad_value(const std::string& key, const std::string& why) {
  throw Error(kErrInvalidConfig, "invalid network configuration", key + ": " + why);
}

[[noreturn]] void unsupported(const std::string& key, const std::string& why) {
  throw Error(kErrUnsupportedField, "unsupported configuration value", key + ": " + why);
}

// "10.0.0.0/8" or a bare address (a single host). The address is masked to its network so that
// the nftables interval starts where the prefix does.
Prefix parse_cidr(const std::string& text, const std::string& key) {
  auto p = Prefix::parse(text, /*allow_bare_ip=*/true);
  if (!p) bad_value(key, "\"" + text + "\" is not an address or CIDR");
  IpAddr addr = p->addr().unmapped();
  int len = p->len();
  if (addr.is_v4() && !p->addr().is_v4()) len = std::max(0, len - 96);
  return Prefix(addr, len).network();
}

std::vector<Prefix> parse_cidr_list(const json& obj, const char* key, const std::string& where) {
  std::vector<Prefix> out;
  auto list = get_string_list(obj, key, where);
  if (!list) return out;
  const std::string path = key_path(where, key);
  for (size_t i = 0; i < list->size(); ++i) {
    out.push_back(parse_cidr((*list)[i], indexed(path, i)));
  }
  return out;
}

std::vector<Proto> parse_protocols(const std::string& text, const std::string& key) {
  std::vector<Proto> out;
  // Comma-separated ("tcp,udp" is two items); an empty item is an unknown protocol, a trailing
  // comma adds none.
  for (size_t b = 0; b < text.size();) {
    const size_t e = std::min(text.find(',', b), text.size());
    const std::string item = text.substr(b, e - b);
    b = e + 1;
    // Runtimes send "TCP" (Kubernetes' spelling) as well as "tcp".
    Proto p;
    if (strcasecmp(item.c_str(), "tcp") == 0) {
      p = Proto::kTcp;
    } else if (strcasecmp(item.c_str(), "udp") == 0) {
      p = Proto::kUdp;
    } else if (strcasecmp(item.c_str(), "sctp") == 0) {
      p = Proto::kSctp;
    } else {
      bad_value(key, "unknown protocol \"" + item + "\" (expected tcp, udp or sctp)");
    }
    push_unique(out, p);
  }
  if (out.empty()) out.push_back(Proto::kTcp);  // "" as netavark: tcp
  return out;
}

PortMapping parse_mapping(const json& m, const std::string& where) {
  if (!m.is_object()) bad_value(where, "expected an object, got " + excerpt(m));
  PortMapping pm;
  auto host_port = get_int(m, "hostPort", where, 0, 65535);
  auto container_port = get_int(m, "containerPort", where, 0, 65535);
  if (!host_port || *host_port == 0) {
    bad_value(key_path(where, "hostPort"), "invalid host port number (must be 1-65535)");
  }
  if (!container_port || *container_port == 0) {
    bad_value(key_path(where, "containerPort"), "invalid container port number (must be 1-65535)");
  }
  pm.host_port = static_cast<uint16_t>(*host_port);
  pm.container_port = static_cast<uint16_t>(*container_port);
  pm.protocols =
      parse_protocols(get_string(m, "protocol", where).value_or(""), key_path(where, "protocol"));
  if (auto ip = get_string(m, "hostIP", where); ip && !ip->empty()) {
    auto parsed = IpAddr::parse(*ip);
    if (!parsed) bad_value(key_path(where, "hostIP"), "\"" + *ip + "\" is not an IP address");
    pm.host_ip = parsed->unmapped();
  }
  if (auto range = get_int(m, "range", where, 1, 65535)) {
    pm.range = static_cast<uint16_t>(*range);
    if (pm.host_port + pm.range - 1 > 65535 || pm.container_port + pm.range - 1 > 65535) {
      bad_value(key_path(where, "range"),
                std::to_string(pm.range) + " ports from " + std::to_string(pm.host_port) + "/" +
                    std::to_string(pm.container_port) + " run past port 65535");
    }
  }
  pm.source_ranges = parse_cidr_list(m, "sourceRanges", where);
  return pm;
}

// Splits the list into words; a quoted word keeps its spaces (`iifname "my if"`).
std::vector<std::string> words(const std::vector<std::string>& list) {
  std::vector<std::string> out;
  for (const std::string& s : list) {
    size_t i = 0;
    while (i < s.size()) {
      if (s[i] == ' ' || s[i] == '\t') {
        ++i;
        continue;
      }
      std::string w;
      if (s[i] == '"') {
        size_t end = s.find('"', i + 1);
        w = s.substr(i + 1, end == std::string::npos ? std::string::npos : end - i - 1);
        i = end == std::string::npos ? s.size() : end + 1;
      } else {
        size_t end = s.find_first_of(" \t", i);
        w = s.substr(i, end == std::string::npos ? std::string::npos : end - i);
        i = end == std::string::npos ? s.size() : end;
      }
      out.push_back(w);
    }
  }
  return out;
}

}  // namespace

const char* proto_name(Proto p) {
  switch (p) {
    case Proto::kTcp:
      return "tcp";
    case Proto::kUdp:
      return "udp";
    case Proto::kSctp:
      return "sctp";
  }
  return "?";
}

std::string Condition::str(bool v6) const {
  std::string op = negate ? " != " : " ";
  switch (kind) {
    case Kind::kSaddr:
      return std::string(v6 ? "ip6" : "ip") + " saddr" + op + prefix.str();
    case Kind::kDaddr:
      return std::string(v6 ? "ip6" : "ip") + " daddr" + op + prefix.str();
    case Kind::kIifname:
      return "iifname" + op + "\"" + ifname + "\"";
  }
  return {};
}

// The words of a condition list, read left to right; `key` names the list in errors.
struct Tokens {
  std::vector<std::string> w;
  const std::string& key;
  size_t i = 0;

  bool done() const { return i >= w.size(); }
  const std::string& next(const char* what) {
    if (i >= w.size()) {
      std::string why = "condition ends before its ";
      why += what;  // appended, not `+`: g++ 12 warns falsely (-Warray-bounds) on the temporary
      unsupported(key, why);
    }
    return w[i++];
  }
  // Optional comparison operator: nft accepts `==`, `eq`, `!=` and `ne`.
  bool negation() {
    if (i < w.size() && (w[i] == "!=" || w[i] == "ne")) {
      ++i;
      return true;
    }
    if (i < w.size() && (w[i] == "==" || w[i] == "eq")) ++i;
    return false;
  }
};

// `ip|ip6 saddr|daddr [!=] CIDR`, after `head` (ip or ip6).
Condition address_condition(Tokens& t, const std::string& head, bool v6) {
  Condition c;
  if (head != (v6 ? "ip6" : "ip")) {
    unsupported(t.key, "\"" + head + "\" matches belong in conditions" + (v6 ? "V4" : "V6"));
  }
  const std::string& field = t.next("field");
  if (field == "saddr") {
    c.kind = Condition::Kind::kSaddr;
  } else if (field == "daddr") {
    c.kind = Condition::Kind::kDaddr;
  } else {
    unsupported(t.key, "\"" + head + " " + field + "\" is outside the supported subset");
  }
  c.negate = t.negation();
  const std::string& value = t.next("address");
  c.prefix = parse_cidr(value, t.key);
  if (c.prefix.addr().is_v4() == v6) {
    bad_value(t.key, "\"" + value + "\" is not an " + (v6 ? "IPv6" : "IPv4") + " address");
  }
  return c;
}

// `iifname [!=] NAME`, after `iifname`.
Condition iifname_condition(Tokens& t) {
  Condition c;
  c.kind = Condition::Kind::kIifname;
  c.negate = t.negation();
  c.ifname = t.next("interface name");
  if (c.ifname.empty() || c.ifname.size() > 15) {
    bad_value(t.key, "\"" + c.ifname + "\" is not an interface name");
  }
  return c;
}

std::vector<Condition> parse_conditions(const std::vector<std::string>& list, bool v6,
                                        const std::string& key) {
  Tokens t{words(list), key, 0};
  const std::vector<std::string>& w = t.w;
  if (!w.empty() && !w[0].empty() && (w[0][0] == '-' || w[0][0] == '!')) {
    bad_value(key, "iptables-syntax conditions (\"" + w[0] +
                       " ...\") are not supported: tether's portmap programs nftables; write them "
                       "in nft syntax, e.g. \"ip daddr != 10.0.0.0/8\"");
  }
  std::vector<Condition> out;
  while (!t.done()) {
    const std::string& head = t.next("field");
    if (head == "ip" || head == "ip6") {
      out.push_back(address_condition(t, head, v6));
    } else if (head == "iifname") {
      out.push_back(iifname_condition(t));
    } else {
      unsupported(key, "\"" + head +
                           "\" is outside the supported subset of nft syntax "
                           "(ip/ip6 saddr|daddr [!=] CIDR, iifname [!=] NAME)");
    }
  }
  return out;
}

Config Config::parse(const NetConf& conf) {
  const json& raw = conf.raw;
  Config c;
  c.snat = get_bool(raw, "snat").value_or(true);
  c.masq_all = get_bool(raw, "masqAll").value_or(false);
  auto mark_bit = get_int(raw, "markMasqBit", {}, 0, 31);
  auto external_chain = get_string(raw, "externalSetMarkChain");
  if (mark_bit && external_chain) {
    bad_value("externalSetMarkChain", "cannot be set together with markMasqBit");
  }
  if (external_chain) {
    unsupported("externalSetMarkChain",
                "an iptables-backend option; the nftables layout masquerades without marks");
  }
  c.mark_masq_bit = static_cast<int>(mark_bit.value_or(kDefaultMarkMasqBit));
  if (auto backend = get_string(raw, "backend"); backend && !backend->empty()) {
    if (*backend == "iptables") {
      unsupported("backend", "\"iptables\": tether's portmap programs nftables only");
    } else if (*backend != "nftables") {
      bad_value("backend", "\"" + *backend + "\" (expected \"nftables\")");
    }
  }
  if (auto v4 = get_string_list(raw, "conditionsV4")) {
    c.conditions_v4 = parse_conditions(*v4, false, "conditionsV4");
  }
  if (auto v6 = get_string_list(raw, "conditionsV6")) {
    c.conditions_v6 = parse_conditions(*v6, true, "conditionsV6");
  }
  c.table = get_nft_table(raw, kDefaultTable);
  c.state_dir = get_state_dir(raw, kDefaultStateDir);
  c.allowed_sources = parse_cidr_list(raw, "allowedSources", {});
  if (const json* maps =
          get_array(conf.runtime_config, "portMappings", "runtimeConfig", kMaxMappings)) {
    for (size_t i = 0; i < maps->size(); ++i) {
      c.mappings.push_back(parse_mapping((*maps)[i], indexed("runtimeConfig.portMappings", i)));
    }
  }
  return c;
}

ContainerAddrs container_addresses(const Result& result, const std::string& ifname) {
  ContainerAddrs out;
  for (const IpConfig& ip : result.ips) {
    if (ip.interface) {
      const int idx = *ip.interface;
      if (idx >= 0 && idx < static_cast<int>(result.interfaces.size()) &&
          (result.interfaces[static_cast<size_t>(idx)].name != ifname ||
           result.interfaces[static_cast<size_t>(idx)].sandbox.empty())) {
        continue;
      }
    }
    std::optional<Prefix>& slot = ip.address.addr().is_v4() ? out.v4 : out.v6;
    if (!slot) slot = ip.address;
  }
  return out;
}

}  // namespace cni::portmap
