#pragma once
// Links, addresses, routes and bridge ports over rtnetlink (libnl-3/libnl-route-3), plus sysctl.
//
// A netlink socket belongs to the network namespace it was opened in, not to the thread that
// uses it: open a Socket inside a NetnsGuard to work on the container side and keep using it
// after the guard is gone if you like. Every call throws cni::Error on failure; expected absence
// ("no such link/address/route") is std::optional or a false return so that DEL stays idempotent.
#include <linux/rtnetlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/c_ptr.h"

namespace cni {
class NetnsFd;
}

namespace cni::nl {

// Owners of libnl objects. Objects are reference counted: "put", not "free".
using SockPtr = CPtr<nl_sock, nl_socket_free>;
using LinkPtr = CPtr<rtnl_link, rtnl_link_put>;
using AddrPtr = CPtr<rtnl_addr, rtnl_addr_put>;
using RoutePtr = CPtr<rtnl_route, rtnl_route_put>;
using NlAddrPtr = CPtr<nl_addr, nl_addr_put>;
using CachePtr = CPtr<nl_cache, nl_cache_free>;
using MsgPtr = CPtr<nl_msg, nlmsg_free>;

// A NETLINK_ROUTE socket connected in the calling thread's current netns.
class Socket {
 public:
  static Socket open();
  nl_sock* get() const { return sock_.get(); }

 private:
  explicit Socket(SockPtr sock) : sock_(std::move(sock)) {}
  SockPtr sock_;
};

// A snapshot of one link as the kernel reported it.
struct Link {
  int ifindex = 0;
  std::string name{};
  std::string kind{};  // IFLA_INFO_KIND: "bridge", "veth", ... empty for plain devices
  std::string mac{};   // lower-case "aa:bb:cc:dd:ee:ff", empty when the link has none
  unsigned mtu = 0;
  int master = 0;        // ifindex of the bridge this link is enslaved to, 0 when none
  int peer_ifindex = 0;  // IFLA_LINK: for a veth, the peer's ifindex in the peer's netns
  unsigned flags = 0;    // IFF_*
  bool up() const;
};

std::optional<Link> get_link(Socket& sock, const std::string& name);
std::optional<Link> get_link(Socket& sock, int ifindex);
// As get_link, but a missing link is an error naming it.
Link require_link(Socket& sock, const std::string& name);

struct BridgeSpec {
  std::string name{};
  unsigned mtu = 0;  // 0: kernel default
  std::optional<std::string> mac{};
  bool vlan_filtering = false;
};
// Creates the bridge, or returns the existing link of that name when it is a bridge (a
// concurrent ADD may have created it first). An existing non-bridge link is an error.
Link ensure_bridge(Socket& sock, const BridgeSpec& spec);
void set_bridge_vlan_filtering(Socket& sock, int ifindex, bool on);

struct VethSpec {
  std::string name{};     // created in the socket's netns
  std::string peer_name;  // created directly inside peer_netns (no rename, no move)
  unsigned mtu = 0;       // both ends; 0: kernel default
  std::optional<std::string> mac{};
  std::optional<std::string> peer_mac{};
};
// Creates the pair atomically; fails with EEXIST details when either name is taken. Returns the
// local end.
Link create_veth(Socket& sock, const VethSpec& spec, const NetnsFd& peer_netns);

void set_link_up(Socket& sock, int ifindex);
void set_link_down(Socket& sock, int ifindex);
void set_mtu(Socket& sock, int ifindex, unsigned mtu);
void set_master(Socket& sock, int ifindex, int master_ifindex);  // 0 releases
void set_promisc(Socket& sock, int ifindex, bool on);
// Returns false when no such link exists (which DEL treats as success).
bool delete_link(Socket& sock, const std::string& name);

// Bridge port settings; unset fields are left as they are.
struct BridgePortFlags {
  std::optional<bool> hairpin{};   // IFLA_BRPORT_MODE
  std::optional<bool> isolated{};  // IFLA_BRPORT_ISOLATED
  std::optional<bool> learning{};  // IFLA_BRPORT_LEARNING
};
void set_bridge_port(Socket& sock, int ifindex, const BridgePortFlags& flags);
// Reads all three back; throws when the link is not a bridge port.
BridgePortFlags get_bridge_port(Socket& sock, int ifindex);

// One VLAN or a range [vid, vid_end] on a bridge port (or on the bridge itself with self).
struct BridgeVlan {
  uint16_t vid = 0;
  uint16_t vid_end = 0;  // 0 or == vid: a single VLAN
  bool pvid = false;
  bool untagged = false;
};
void bridge_vlan_add(Socket& sock, int ifindex, const std::vector<BridgeVlan>& vlans,
                     bool self = false);
void bridge_vlan_del(Socket& sock, int ifindex, const std::vector<BridgeVlan>& vlans,
                     bool self = false);

struct Address {
  int family = 0;    // AF_INET or AF_INET6
  std::string ip{};  // "10.1.0.2", "fd00::2"
  int prefix_len = 0;
  unsigned flags = 0;  // IFA_F_*
  int scope = 0;
  std::string cidr() const { return ip + "/" + std::to_string(prefix_len); }
};
struct AddressOptions {
  bool nodad = false;  // IFA_F_NODAD: usable at once, no duplicate detection
  bool tolerate_exists = false;
};
// cidr is "10.1.0.2/24" or "fd00::2/64". IPv4 gets the broadcast address like `ip addr add brd +`.
void add_address(Socket& sock, int ifindex, const std::string& cidr,
                 const AddressOptions& opts = {});
std::vector<Address> list_addresses(Socket& sock, int ifindex, int family = AF_UNSPEC);
// Returns false when the address is not there.
bool delete_address(Socket& sock, int ifindex, const std::string& cidr);

struct Route {
  int family = AF_INET;
  std::string dst = "0.0.0.0/0";  // CIDR
  std::optional<std::string> gateway{};
  int oif = 0;
  uint32_t mtu = 0;     // RTAX_MTU, 0: unset
  uint32_t advmss = 0;  // RTAX_ADVMSS, 0: unset
  uint32_t priority = 0;
  uint32_t table = RT_TABLE_MAIN;
  std::optional<uint8_t> scope{};  // unset: link without gateway, universe with one
  uint8_t protocol = RTPROT_BOOT;
  uint8_t type = RTN_UNICAST;
};
enum class RouteMode { kAdd, kAddOrExisting, kReplace };
void add_route(Socket& sock, const Route& route, RouteMode mode = RouteMode::kAdd);
// Routes of one family in one table (RT_TABLE_UNSPEC: all), optionally only those via oif.
std::vector<Route> list_routes(Socket& sock, int family, int oif = 0,
                               uint32_t table = RT_TABLE_MAIN);
// Returns false when no such route exists.
bool delete_route(Socket& sock, const Route& route);

// sysctl through /proc/sys, in the calling thread's netns for net.* keys. `key` is slash- or
// dot-separated relative to /proc/sys ("net/ipv4/ip_forward"); use iface_sysctl() for
// per-interface keys since interface names may contain dots.
void write_sysctl(std::string_view key, std::string_view value);
std::optional<std::string> read_sysctl(std::string_view key);  // nullopt when absent
// "net/<ipv4|ipv6>/conf/<ifname>/<knob>", e.g. iface_sysctl("ipv6", "eth0", "accept_dad").
std::string iface_sysctl(std::string_view ip_version, std::string_view ifname,
                         std::string_view knob);

}  // namespace cni::nl

namespace cni {
using NlSocket = nl::Socket;
}  // namespace cni
