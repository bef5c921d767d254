#pragma once
// portmap's configuration: the reference plugin's keys (snat, masqAll, markMasqBit,
// conditionsV4/V6, backend), runtimeConfig.portMappings, and tether's additions (port ranges,
// source restrictions, the nftables table and the state directory). Config::parse is the one
// place for defaults and validation; see README.md for the table.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "common/netconf.h"
#include "common/types.h"

namespace cni::portmap {

inline constexpr const char* kDefaultTable = "tether-portmap";
inline constexpr const char* kDefaultStateDir = "/run/cni/tether-portmap";
inline constexpr int kDefaultMarkMasqBit = 13;

enum class Proto : uint8_t { kTcp = 6, kUdp = 17, kSctp = 132 };
const char* proto_name(Proto p);

struct PortMapping {
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  std::vector<Proto> protocols;       // netavark's "tcp,udp" publishes both
  std::optional<IpAddr> host_ip;      // nullopt: every host address of both families
  uint16_t range = 1;                 // consecutive host and container ports, netavark's meaning
  std::vector<Prefix> source_ranges;  // empty: the plugin's allowedSources
};

// One match of conditionsV4/conditionsV6. The reference hands these strings to the nft CLI;
// without the CLI's parser we accept a documented subset (README.md) and refuse the rest by name.
struct Condition {
  enum class Kind : uint8_t { kSaddr, kDaddr, kIifname };
  Kind kind = Kind::kSaddr;
  bool negate = false;
  Prefix prefix;                   // kSaddr, kDaddr
  std::string ifname;              // kIifname
  std::string str(bool v6) const;  // canonical nft text, e.g. `ip daddr != 10.0.0.0/8`
};

// runtimeConfig.portMappings longer than this is error 7: 65535 ports times tcp/udp/sctp on one
// address is already more than anyone publishes, and each mapping is a map element.
constexpr size_t kMaxMappings = 16384;

struct Config {
  bool snat = true;
  bool masq_all = false;
  int mark_masq_bit = kDefaultMarkMasqBit;  // validated for compatibility; nftables needs no mark
  std::vector<Condition> conditions_v4;
  std::vector<Condition> conditions_v6;
  std::string table = kDefaultTable;
  std::string state_dir = kDefaultStateDir;
  std::vector<Prefix> allowed_sources;
  std::vector<PortMapping> mappings;

  // Throws Error code 7 naming the key for a wrong type or value, code 2 for a value we do not
  // support (the iptables backend, an nft condition outside the subset).
  static Config parse(const NetConf& conf);
};

// Parses one conditionsV4/V6 list; exposed for the unit tests.
std::vector<Condition> parse_conditions(const std::vector<std::string>& list, bool v6,
                                        const std::string& key);

// The container's addresses: the first IPv4 and IPv6 of prevResult whose interface is `ifname`
// inside a sandbox (an address without an interface index counts, as in the reference).
struct ContainerAddrs {
  std::optional<Prefix> v4;
  std::optional<Prefix> v6;
};
ContainerAddrs container_addresses(const Result& result, const std::string& ifname);

}  // namespace cni::portmap
