#include "plugins/ipam-host-local/config.h"

#include <algorithm>

#include "common/dns_settings.h"
#include "common/error.h"
#include "common/push_unique.h"

namespace cni::hostlocal {

namespace {

std::string indexed(const std::string& where, size_t i) {
  return where + "[" + std::to_string(i) + "]";
}

// An optional address key: absent, null and "" all mean unset, as for Go's net.IP.
std::optional<IpAddr> get_ip(const json& obj, const char* key, const std::string& where) {
  auto text = get_string(obj, key, where);
  if (!text || text->empty()) return std::nullopt;
  auto ip = IpAddr::parse(*text);
  if (!ip) throw Error(kErrInvalidConfig, "invalid IP address: " + *text, key_path(where, key));
  return ip->unmapped();
}

Range parse_range(const json& obj, const std::string& where) {
  if (!obj.is_object()) throw_config(where + ": expected an object, got " + excerpt(obj));
  Range r;
  auto subnet = get_string(obj, "subnet", where);
  if (!subnet) throw Error(kErrInvalidConfig, "missing subnet", key_path(where, "subnet"));
  auto prefix = Prefix::parse(*subnet);
  if (!prefix) {
    throw Error(kErrInvalidConfig, "invalid CIDR address: " + *subnet, key_path(where, "subnet"));
  }
  r.subnet = *prefix;
  r.range_start = get_ip(obj, "rangeStart", where);
  r.range_end = get_ip(obj, "rangeEnd", where);
  r.gateway = get_ip(obj, "gateway", where);
  return r;
}

// A list of range sets (ipam.ranges or runtimeConfig.ipRanges), appended to `out` together with
// the key path of each set, uncanonicalized.
void parse_range_sets(const json& parent, const char* key, const std::string& where,
                      std::vector<std::pair<RangeSet, std::string>>& out) {
  const json* sets = get_array(parent, key, where);
  if (!sets) return;
  const std::string path = key_path(where, key);
  for (size_t i = 0; i < sets->size(); ++i) {
    const json& s = (*sets)[i];
    const std::string set_where = indexed(path, i);
    if (!s.is_array()) throw_config(set_where + ": expected a list of ranges, got " + excerpt(s));
    if (s.size() > kMaxList) {
      throw_config(set_where + ": " + std::to_string(s.size()) + " ranges, at most " +
                   std::to_string(kMaxList) + " are accepted");
    }
    RangeSet set;
    for (size_t j = 0; j < s.size(); ++j) set.push_back(parse_range(s[j], indexed(set_where, j)));
    out.emplace_back(std::move(set), set_where);
  }
}

// "10.1.2.3" or "10.1.2.3/24" (the prefix length is ignored), as the reference's ip.IP.
std::optional<IpAddr> parse_requested(const std::string& text) {
  auto p = Prefix::parse(text, /*allow_bare_ip=*/true);
  if (!p) return std::nullopt;
  return p->addr().unmapped();
}

std::vector<IpAddr> requested_list(const json& parent, const std::string& where) {
  std::vector<IpAddr> out;
  auto list = get_string_list(parent, "ips", where);
  if (!list) return out;
  for (size_t i = 0; i < list->size(); ++i) {
    auto ip = parse_requested((*list)[i]);
    if (!ip) {
      throw Error(kErrInvalidConfig, "invalid IP address " + (*list)[i],
                  indexed(key_path(where, "ips"), i));
    }
    out.push_back(*ip);
  }
  return out;
}

std::vector<IpAddr> parse_requested_ips(const NetConf& conf, const CniArgs& cni_args) {
  // Every source is validated even when a higher one wins, so a malformed value is never
  // silently accepted.
  cni_args.check_known({"IP"});
  std::vector<IpAddr> from_env;
  if (auto text = cni_args.get("IP"); text && !text->empty()) {
    auto ip = parse_requested(*text);
    if (!ip) {
      throw Error(
          kErrInvalidEnv, "invalid CNI_ARGS",
          "ARGS: error parsing value of pair \"IP=" + *text + "\": invalid IP address " + *text);
    }
    from_env.push_back(*ip);
  }
  std::vector<IpAddr> from_args;
  if (const json* cni = get_object(conf.args, "cni", "args")) {
    from_args = requested_list(*cni, "args.cni");
  }
  std::vector<IpAddr> from_runtime = requested_list(conf.runtime_config, "runtimeConfig");

  // CONVENTIONS.md: information given in args supersedes CNI_ARGS; the runtime's capability
  // args supersede both. (The reference merges all three instead; see README.)
  const std::vector<IpAddr>& chosen = !from_runtime.empty() ? from_runtime
                                      : !from_args.empty()  ? from_args
                                                            : from_env;
  std::vector<IpAddr> out;
  for (const auto& ip : chosen) push_unique(out, ip);
  return out;
}

using NamedSets = std::vector<std::pair<RangeSet, std::string>>;

// With ipam.cluster: the block size, and each range set one cluster range without the keys
// that the blocks decide.
void parse_cluster_keys(Config& c, const json& ipam, const NamedSets& sets) {
  c.block_size = static_cast<int>(get_int(ipam, "blockSize", "ipam", 1, 126).value_or(24));
  c.release_empty_blocks = get_bool(ipam, "releaseEmptyBlocks", "ipam").value_or(false);
  for (const auto& [set, where] : sets) {
    // The set names the cluster range; where addresses go inside it is the blocks' business.
    if (set.size() != 1) {
      throw_config(where + ": with ipam.cluster a range set is one cluster range, got " +
                   std::to_string(set.size()) + " ranges");
    }
    const Range& r = set[0];
    const std::string w = where == "ipam" ? where : indexed(where, 0);
    if (r.range_start || r.range_end || r.gateway) {
      throw_config(w +
                   ": rangeStart, rangeEnd and gateway come from the blocks with "
                   "ipam.cluster (gateway = a block's first address)");
    }
    int len = r.subnet.len(), bits = r.subnet.addr().bits();
    if (c.block_size < len || c.block_size > bits - 2) {
      throw_config("ipam.blockSize: " + std::to_string(c.block_size) +
                   " must be between the prefix length of " + w + ".subnet (" +
                   std::to_string(len) + ") and " + std::to_string(bits - 2));
    }
  }
}

// Every set canonicalized, and no two overlapping.
void check_range_sets(NamedSets& sets) {
  for (size_t i = 0; i < sets.size(); ++i) {
    // The legacy range's keys sit directly under "ipam"; report them as such.
    std::string where = sets[i].second;
    if (where == "ipam") {
      Range& r = sets[i].first[0];
      r.canonicalize("invalid range set " + std::to_string(i) + ": ", "ipam");
    } else {
      canonicalize_set(sets[i].first, i, where);
    }
  }
  for (size_t i = 0; i < sets.size(); ++i) {
    for (size_t j = i + 1; j < sets.size(); ++j) {
      if (sets_overlap(sets[i].first, sets[j].first)) {
        throw Error(kErrInvalidConfig,
                    "range set " + std::to_string(i) + " overlaps with " + std::to_string(j),
                    sets[j].second);
      }
    }
  }
}

std::vector<Route> parse_routes(const json& ipam) {
  std::vector<Route> out;
  if (const json* routes = get_array(ipam, "routes", "ipam")) {
    for (size_t i = 0; i < routes->size(); ++i) {
      const std::string where = indexed("ipam.routes", i);
      if (!(*routes)[i].is_object()) throw_config(where + ": expected an object");
      try {
        out.push_back(route_from_json((*routes)[i]));
      } catch (const Error& e) {
        throw_config(where + ": " + e.details());
      }
    }
  }
  return out;
}

}  // namespace

Config Config::parse(const NetConf& conf, const CniArgs& cni_args) {
  if (!find_key(conf.raw, "ipam")) {
    throw Error(kErrInvalidConfig, "IPAM config missing 'ipam' key", "ipam");
  }
  const json& ipam = conf.ipam;
  Config c;
  c.network = conf.name;
  c.requested_ips = parse_requested_ips(conf, cni_args);

  // Allocation order, as the reference builds it: runtime ipRanges, legacy range, ipam.ranges.
  NamedSets sets;
  parse_range_sets(conf.runtime_config, "ipRanges", "runtimeConfig", sets);
  if (find_key(ipam, "subnet")) {
    sets.emplace_back(RangeSet{parse_range(ipam, "ipam")}, "ipam");
  }
  parse_range_sets(ipam, "ranges", "ipam", sets);
  if (sets.empty()) throw Error(kErrInvalidConfig, "no IP ranges specified", "ipam.ranges");
  c.cluster = cluster::from_plugin_conf(ipam, "ipam");
  if (c.cluster) parse_cluster_keys(c, ipam, sets);
  check_range_sets(sets);
  for (auto& s : sets) c.range_sets.push_back(std::move(s.first));

  c.routes = parse_routes(ipam);
  if (auto dir = get_string(ipam, "dataDir", "ipam"); dir && !dir->empty()) c.data_dir = *dir;
  c.resolv_conf = get_string(ipam, "resolvConf", "ipam").value_or("");
  if (conf.dns && !conf.dns->empty()) c.network_dns = conf.dns;
  c.runtime_dns = cni::runtime_dns(conf.runtime_config);
  c.valid_attachments = cni::valid_attachments(conf.raw);
  return c;
}

}  // namespace cni::hostlocal
