#pragma once
// What one attachment publishes, as nftables set elements: the plan is computed from the config
// and the container's addresses alone (no I/O), persisted as the attachment's state, and undone
// from that state, so DEL and GC need neither the config's mappings nor prevResult.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/nft.h"
#include "plugins/portmap/config.h"

namespace cni::portmap {

// The table's sets (README.md, "nftables layout").
inline constexpr const char* kDnat4Ip = "dnat4_ip";    // ip daddr . l4proto . dport : ip . port
inline constexpr const char* kDnat4Any = "dnat4_any";  // l4proto . dport : ip . port
inline constexpr const char* kDnat6Ip = "dnat6_ip";
inline constexpr const char* kDnat6Any = "dnat6_any";
// Only the ports that admit some sources alone have elements in these: the keys of the DNAT map
// (restrict*, exact) and, per key range, the sources admitted (allow*, intervals).
inline constexpr const char* kRestrict4Ip = "restrict4_ip";    // as dnat4_ip's key
inline constexpr const char* kRestrict4Any = "restrict4_any";  // as dnat4_any's key
inline constexpr const char* kRestrict6Ip = "restrict6_ip";
inline constexpr const char* kRestrict6Any = "restrict6_any";
inline constexpr const char* kAllow4Ip = "allow4_ip";    // daddr . l4proto . dport . saddr, ranges
inline constexpr const char* kAllow4Any = "allow4_any";  // l4proto . dport . saddr, ranges
inline constexpr const char* kAllow6Ip = "allow6_ip";
inline constexpr const char* kAllow6Any = "allow6_any";

// The masquerade set of one source prefix length: "masq4_24" holds `container . source network`
// for the sources of a /24 (the container's subnet, 127.0.0.0/8, or /0 for masqAll), exact keys
// that the kernel finds by hash, each set with its one rule that masks the source to that length
// (made when a plan first names the set).
std::string masq_set(bool v6, int prefix_len);
// The prefix length of a masq_set() name; nullopt for any other name.
std::optional<int> masq_set_len(const std::string& set, bool* v6 = nullptr);

struct SetElement {
  std::string set;
  nft::Element element;
  bool operator==(const SetElement& o) const {
    return set == o.set && element.key == o.element.key && element.key_end == o.element.key_end &&
           element.data == o.element.data;
  }
};

// Everything one published port range of one family (or one masquerade entry) adds, all or
// nothing, in one batch.
struct Group {
  std::string what;  // "tcp *:8080 -> 10.88.0.5:80", for messages
  // The DNAT keys of a published port belong to one attachment at a time; a key another
  // attachment holds is a conflict. Masquerade entries are not exclusive.
  bool exclusive = false;
  // keys[0] is the witness: present with this data, the whole group is in place and ours.
  std::vector<SetElement> keys;
  std::vector<SetElement> members;  // removed together with the keys
  bool operator==(const Group&) const = default;
};

// UDP conntrack entries to flush: original destination port in [port, port + count).
struct FlushTarget {
  int family = 4;  // 4 or 6
  uint16_t port = 0;
  uint16_t count = 1;
  std::optional<IpAddr> host_ip;  // nullopt: any destination address
  bool operator==(const FlushTarget&) const = default;
};

struct Plan {
  std::vector<Group> groups;
  std::vector<FlushTarget> udp;
  bool route_localnet = false;  // snat and IPv4 mappings: 127.0.0.1:hostPort must work
};

// Throws Error code 7 when one request publishes the same (protocol, host address, port) twice.
Plan make_plan(const Config& config, const ContainerAddrs& addrs);

// Prefixes reduced to disjoint ones (nested prefixes dropped), as interval sets require.
std::vector<Prefix> disjoint(std::vector<Prefix> prefixes);

}  // namespace cni::portmap
