#include "plugins/portmap/plan.h"

#include <algorithm>
#include <set>
#include <utility>

#include "common/error.h"

namespace cni::portmap {

namespace {

// The whole address space of a family: the source range of an unrestricted port.
Prefix everything(bool v6) { return Prefix(v6 ? *IpAddr::parse("::") : IpAddr::v4(0), 0); }

std::string endpoint(const std::optional<IpAddr>& ip, uint16_t port, uint16_t count) {
  std::string host = ip ? ip->str() : "*";
  if (ip && !ip->is_v4()) host = '[' + host + ']';
  std::string ports = std::to_string(port);
  if (count > 1) {
    ports += '-';
    ports += std::to_string(port + count - 1);
  }
  return host + ":" + ports;
}

struct FamilyPlan {
  bool v6;
  Prefix container;
};

// The DNAT keys and source-filter elements of one mapping, one protocol, one family.
Group publish(const Config& config, const PortMapping& m, Proto proto, const FamilyPlan& f) {
  const bool wildcard = !m.host_ip || m.host_ip->is_zero();
  const char* dnat_set =
      f.v6 ? (wildcard ? kDnat6Any : kDnat6Ip) : (wildcard ? kDnat4Any : kDnat4Ip);
  const char* allow_set =
      f.v6 ? (wildcard ? kAllow6Any : kAllow6Ip) : (wildcard ? kAllow4Any : kAllow4Ip);
  const char* restrict_set =
      f.v6 ? (wildcard ? kRestrict6Any : kRestrict6Ip) : (wildcard ? kRestrict4Any : kRestrict4Ip);
  const uint8_t p = static_cast<uint8_t>(proto);
  const nft::Bytes ctr = nft::addr(f.container.addr());

  Group g;
  g.exclusive = true;
  g.what = std::string(proto_name(proto)) + " " +
           endpoint(wildcard ? std::nullopt : m.host_ip, m.host_port, m.range) +
           (wildcard ? (f.v6 ? " (IPv6)" : " (IPv4)") : "") + " -> " +
           endpoint(f.container.addr(), m.container_port, m.range);

  auto key_fields = [&](uint16_t port) {
    std::vector<nft::Bytes> fields;
    if (!wildcard) fields.push_back(nft::addr(*m.host_ip));
    fields.push_back(nft::u8(p));
    fields.push_back(nft::be16(port));
    return fields;
  };
  for (uint16_t i = 0; i < m.range; ++i) {
    nft::Element e;
    e.key = nft::concat(key_fields(static_cast<uint16_t>(m.host_port + i)));
    e.data = nft::concat({ctr, nft::be16(static_cast<uint16_t>(m.container_port + i))});
    g.keys.push_back({dnat_set, std::move(e)});
  }

  // Sources: the mapping's own list, else the plugin's; none at all means everyone, and then the
  // port has no element in the restrict and allow sets. A restricted port with no source of this
  // family is closed to that family.
  const std::vector<Prefix>& listed =
      m.source_ranges.empty() ? config.allowed_sources : m.source_ranges;
  if (listed.empty()) return g;
  for (const SetElement& k : g.keys) g.members.push_back({restrict_set, {k.element.key, {}}});
  std::vector<Prefix> sources;
  for (const Prefix& s : listed) {
    if (s.addr().is_v4() != f.v6) sources.push_back(s);
  }
  sources = disjoint(std::move(sources));
  const uint16_t last_port = static_cast<uint16_t>(m.host_port + m.range - 1);
  for (const Prefix& s : sources) {
    std::vector<nft::Bytes> from = key_fields(m.host_port);
    std::vector<nft::Bytes> to = key_fields(last_port);
    from.push_back(nft::addr(s.first()));
    to.push_back(nft::addr(s.last()));
    nft::Element e;
    e.key = nft::concat(from);
    e.key_end = nft::concat(to);
    g.members.push_back({allow_set, std::move(e)});
  }
  return g;
}

SetElement masq_element(const FamilyPlan& f, const Prefix& sources) {
  nft::Element e;
  e.key = nft::concat({nft::addr(f.container.addr()), nft::addr(sources.first())});
  return {masq_set(f.v6, sources.len()), std::move(e)};
}

// Hairpin (a container of the subnet reaching a published port through a host address) and
// localhost (127.0.0.1:hostPort) need the source rewritten, or the reply would bypass the host's
// conntrack; masqAll rewrites every source, as the reference does for macvlan/ipvlan.
Group masquerade(const Config& config, const FamilyPlan& f) {
  Group g;
  g.what = "masquerade to " + f.container.addr().str();
  if (config.masq_all) {
    g.keys.push_back(masq_element(f, everything(f.v6)));
    return g;
  }
  const Prefix subnet = f.container.network();
  g.keys.push_back(masq_element(f, subnet));
  const Prefix loopback(IpAddr::v4(0x7f000000), 8);
  if (!f.v6 && !subnet.overlaps(loopback)) g.members.push_back(masq_element(f, loopback));
  return g;
}

}  // namespace

std::string masq_set(bool v6, int prefix_len) {
  return (v6 ? "masq6_" : "masq4_") + std::to_string(prefix_len);
}

std::optional<int> masq_set_len(const std::string& set, bool* v6) {
  const bool six = set.rfind("masq6_", 0) == 0;
  if (!six && set.rfind("masq4_", 0) != 0) return std::nullopt;
  const std::string digits = set.substr(6);
  if (digits.empty() || digits.size() > 3 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  const int len = std::stoi(digits);
  if (len > (six ? 128 : 32) || std::to_string(len) != digits) return std::nullopt;
  if (v6) *v6 = six;
  return len;
}

std::vector<Prefix> disjoint(std::vector<Prefix> prefixes) {
  for (Prefix& p : prefixes) p = p.network();
  // Shortest first: a prefix is dropped when an earlier (shorter or equal) one covers it.
  std::sort(prefixes.begin(), prefixes.end(),
            [](const Prefix& a, const Prefix& b) { return a.len() < b.len(); });
  std::vector<Prefix> out;
  for (const Prefix& p : prefixes) {
    bool covered = false;
    for (const Prefix& q : out) covered = covered || q.contains(p.addr());
    if (!covered) out.push_back(p);
  }
  return out;
}

Plan make_plan(const Config& config, const ContainerAddrs& addrs) {
  Plan plan;
  std::vector<FamilyPlan> families;
  if (addrs.v4) families.push_back({false, *addrs.v4});
  if (addrs.v6) families.push_back({true, *addrs.v6});

  std::set<std::pair<std::string, nft::Bytes>> seen;
  for (size_t i = 0; i < config.mappings.size(); ++i) {
    const PortMapping& m = config.mappings[i];
    for (const FamilyPlan& f : families) {
      // A host address of the other family is skipped, as in the reference.
      if (m.host_ip && m.host_ip->is_v4() == f.v6) continue;
      for (Proto proto : m.protocols) {
        Group g = publish(config, m, proto, f);
        for (const SetElement& k : g.keys) {
          if (!seen.insert({k.set, k.element.key}).second) {
            throw Error(kErrInvalidConfig, "invalid network configuration",
                        "runtimeConfig.portMappings[" + std::to_string(i) + "]: " + g.what +
                            " publishes a host port that an earlier mapping already publishes");
          }
        }
        plan.groups.push_back(std::move(g));
        if (proto == Proto::kUdp) {
          std::optional<IpAddr> host;
          if (m.host_ip && !m.host_ip->is_zero()) host = m.host_ip;
          plan.udp.push_back({f.v6 ? 6 : 4, m.host_port, m.range, host});
        }
        plan.route_localnet = plan.route_localnet || (config.snat && !f.v6);
      }
    }
  }
  if (config.snat) {
    for (const FamilyPlan& f : families) {
      const char* set = f.v6 ? kDnat6Any : kDnat4Any;
      const char* set_ip = f.v6 ? kDnat6Ip : kDnat4Ip;
      bool used = std::any_of(plan.groups.begin(), plan.groups.end(), [&](const Group& g) {
        return g.keys.front().set == set || g.keys.front().set == set_ip;
      });
      if (used) plan.groups.push_back(masquerade(config, f));
    }
  }
  return plan;
}

}  // namespace cni::portmap
