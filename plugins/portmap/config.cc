#include "plugins/portmap/config.h"

#include <strings.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "common/error.h"

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
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
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
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  if (out.empty()) out.push_back(Proto::kTcp);  // "" as netavark: tcp
  return out;
}

PortMapping parse_mapping(const json& m, const std::string& where) {
  if (!m.is_object()) bad_value(where, "expected an object, got " + m.dump());
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

std::vector<Condition> parse_conditions(const std::vector<std::string>& list, bool v6,
                                        const std::string& key) {
  std::vector<std::string> w = words(list);
  std::vector<Condition> out;
  if (!w.empty() && !w[0].empty() && (w[0][0] == '-' || w[0][0] == '!')) {
    bad_value(key, "iptables-syntax conditions (\"" + w[0] +
                       " ...\") are not supported: tether's portmap programs nftables; write them "
                       "in nft syntax, e.g. \"ip daddr != 10.0.0.0/8\"");
  }
  const char* family = v6 ? "ip6" : "ip";
  size_t i = 0;
  auto next = [&](const char* what) -> const std::string& {
    if (i >= w.size()) {
      std::string why = "condition ends before its ";
      why += what;  // appended, not `+`: g++ 12 warns falsely (-Warray-bounds) on the temporary
      unsupported(key, why);
    }
    return w[i++];
  };
  // Optional comparison operator: nft accepts `==`, `eq`, `!=` and `ne`.
  auto op = [&]() {
    if (i < w.size() && (w[i] == "!=" || w[i] == "ne")) {
      ++i;
      return true;
    }
    if (i < w.size() && (w[i] == "==" || w[i] == "eq")) ++i;
    return false;
  };
  while (i < w.size()) {
    const std::string& head = w[i++];
    Condition c;
    if (head == "ip" || head == "ip6") {
      if (head != family) {
        unsupported(key, "\"" + head + "\" matches belong in conditions" + (v6 ? "V4" : "V6"));
      }
      const std::string& field = next("field");
      if (field == "saddr") {
        c.kind = Condition::Kind::kSaddr;
      } else if (field == "daddr") {
        c.kind = Condition::Kind::kDaddr;
      } else {
        unsupported(key, "\"" + head + " " + field + "\" is outside the supported subset");
      }
      c.negate = op();
      const std::string& value = next("address");
      c.prefix = parse_cidr(value, key);
      if (c.prefix.addr().is_v4() == v6) {
        bad_value(key, "\"" + value + "\" is not an " + (v6 ? "IPv6" : "IPv4") + " address");
      }
    } else if (head == "iifname") {
      c.kind = Condition::Kind::kIifname;
      c.negate = op();
      c.ifname = next("interface name");
      if (c.ifname.empty() || c.ifname.size() > 15) {
        bad_value(key, "\"" + c.ifname + "\" is not an interface name");
      }
    } else {
      unsupported(key, "\"" + head +
                           "\" is outside the supported subset of nft syntax "
                           "(ip/ip6 saddr|daddr [!=] CIDR, iifname [!=] NAME)");
    }
    out.push_back(std::move(c));
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
  if (auto table = get_string(raw, "nftTable")) {
    // nft names: a letter first, then letters, digits, '-', '_', '.' (the CLI's identifier).
    bool valid = !table->empty() && table->size() < 256 &&
                 std::isalpha(static_cast<unsigned char>((*table)[0]));
    for (char ch : *table) {
      valid = valid &&
              (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.');
    }
    if (!valid) bad_value("nftTable", "\"" + *table + "\" is not a valid nftables table name");
    c.table = *table;
  }
  if (auto dir = get_string(raw, "stateDir")) {
    if (dir->empty() || (*dir)[0] != '/') bad_value("stateDir", "must be an absolute path");
    c.state_dir = *dir;
  }
  c.allowed_sources = parse_cidr_list(raw, "allowedSources", {});
  if (const json* maps = get_array(conf.runtime_config, "portMappings", "runtimeConfig")) {
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
