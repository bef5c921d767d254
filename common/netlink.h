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
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/c_ptr.h"
#include "common/ip.h"
#include "common/mac.h"

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
  std::string kind{};        // IFLA_INFO_KIND: "bridge", "veth", ... empty for plain devices
  std::optional<Mac> mac{};  // nullopt when the link has none
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
  std::optional<Mac> mac{};
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
  std::optional<Mac> mac{};
  std::optional<Mac> peer_mac{};
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
// Deletes link `ifindex` (`name`, for messages) of the calling thread's netns, and returns as
// soon as the kernel has unregistered it (its RTM_DELLINK notification: gone from every listing,
// its name and index free, for a veth its peer too), not once the kernel's deferred work for
// the delete is done (netdev_run_todo's rcu_barrier, most of a veth delete's time, which needs
// nothing of the caller). The request is made by a detached grandchild (common/detached.h),
// which also holds `keep` until the kernel has answered it: descriptors whose last release
// would wait for a grace period (bridge's netfilter socket). Where no grandchild can be made,
// deletes here and waits. False when no such link exists; throws what delete_link throws.
// link_delete.cc.
bool delete_link_detached(int ifindex, const std::string& name, std::span<const int> keep);

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
  int ifindex = 0;
  int family = 0;  // AF_INET or AF_INET6
  IpAddr ip{};
  int prefix_len = 0;
  unsigned flags = 0;  // IFA_F_*
  int scope = 0;
  Prefix cidr() const { return Prefix(ip, prefix_len); }
};
struct AddressOptions {
  bool nodad = false;  // IFA_F_NODAD: usable at once, no duplicate detection
  bool tolerate_exists = false;
};
// The address with its prefix length (10.1.0.2/24, fd00::2/64). IPv4 gets the broadcast address
// like `ip addr add brd +`.
void add_address(Socket& sock, int ifindex, const Prefix& cidr, const AddressOptions& opts = {});
// ifindex 0: the addresses of every link.
std::vector<Address> list_addresses(Socket& sock, int ifindex, int family = AF_UNSPEC);
// Returns false when the address is not there.
bool delete_address(Socket& sock, int ifindex, const Prefix& cidr);

struct Route {
  int family = AF_INET;  // of dst and gateway
  Prefix dst{};          // 0.0.0.0/0 unless set
  std::optional<IpAddr> gateway{};
  int oif = 0;
  uint32_t mtu = 0;     // RTAX_MTU, 0: unset
  uint32_t advmss = 0;  // RTAX_ADVMSS, 0: unset
  uint32_t priority = 0;
  uint32_t table = RT_TABLE_MAIN;
  std::optional<uint8_t> scope{};  // unset: link without gateway, universe with one
  uint8_t protocol = RTPROT_BOOT;
  uint8_t type = RTN_UNICAST;
  // RTNH_F_ONLINK: the gateway is on the link even though no address of the link covers it
  // (an overlay's routes to a peer's block via that block's VTEP address).
  bool onlink = false;
};
enum class RouteMode { kAdd, kAddOrExisting, kReplace };
void add_route(Socket& sock, const Route& route, RouteMode mode = RouteMode::kAdd);
// Routes of one family in one table (RT_TABLE_UNSPEC: all), optionally only those via oif.
std::vector<Route> list_routes(Socket& sock, int family, int oif = 0,
                               uint32_t table = RT_TABLE_MAIN);
// Returns false when no such route exists.
bool delete_route(Socket& sock, const Route& route);

// VXLAN devices (the overlay's tunnel endpoint). The device has no remote or group, so nothing is
// flooded to other hosts: every peer is a static FDB entry, every peer address a permanent
// neighbour (flannel's vxlan design). Learning is off.
struct VxlanSpec {
  std::string name{};
  uint32_t vni = 0;
  uint16_t port = 4789;      // UDP destination port
  IpAddr local{};            // underlay source address
  int underlay_ifindex = 0;  // 0: no IFLA_VXLAN_LINK
  unsigned mtu = 0;          // 0: kernel default
  std::optional<Mac> mac{};
};
struct Vxlan {
  Link link;
  uint32_t vni = 0;
  uint16_t port = 0;
  std::optional<IpAddr> local{};
  bool learning = true;
};
// The VXLAN parameters of a link; nullopt when no such link exists or it is not a VXLAN.
std::optional<Vxlan> get_vxlan(Socket& sock, const std::string& name);
// Creates the device, or keeps an existing one whose VNI, port, local address and learning
// match; an existing device that differs (the host's underlay address changed, say) is deleted
// and created again, since the kernel cannot change those in place. Any other kind of link of
// that name is an error. MTU and MAC of a kept device are set to the spec's. The device is up on
// return. `created` says whether it is new (its neighbours, FDB entries and routes are gone).
Link ensure_vxlan(Socket& sock, const VxlanSpec& spec, bool* created = nullptr);

// IPv4/IPv6 neighbours (ARP/NDP entries) of one link.
struct Neighbour {
  IpAddr ip{};
  std::optional<Mac> mac{};  // nullopt for an incomplete entry
  uint16_t state = 0;        // NUD_*
};
std::vector<Neighbour> list_neighbours(Socket& sock, int ifindex, int family = AF_INET);

// Forwarding database entries of a VXLAN device (`bridge fdb ... self`): frames to `mac` are
// sent to the underlay address `dst`. Entries without a destination (the device's own
// multicast/unicast filter list) are not reported.
struct FdbEntry {
  Mac mac{};
  IpAddr dst{};
  uint16_t state = 0;
};
std::vector<FdbEntry> list_fdb(Socket& sock, int ifindex);

// Several requests sent back to back and acknowledged together: one round trip instead of one
// per request. rtnetlink has no transactions for routes, neighbours or FDB entries, so a batch
// is not atomic: each request succeeds or fails on its own, commit() reports every failure, and
// callers keep their requests idempotent (replace, delete-if-there) so that running the same
// batch again repairs a partial one.
class Batch {
 public:
  // Permanent entries, created or replaced.
  void set_neighbour(int ifindex, const IpAddr& ip, const Mac& mac);
  void delete_neighbour(int ifindex, const IpAddr& ip);
  void set_fdb(int ifindex, const Mac& mac, const IpAddr& dst);
  void delete_fdb(int ifindex, const Mac& mac, const IpAddr& dst);
  void add_route(const Route& route, RouteMode mode = RouteMode::kReplace);
  void delete_route(const Route& route);
  void add_address(int ifindex, const Prefix& cidr);  // an address already there is fine
  void delete_address(int ifindex, const Prefix& cidr);

  size_t size() const { return requests_.size(); }
  bool empty() const { return requests_.empty(); }
  // Sends everything and waits for every ACK. Deletes of something already gone count as done.
  // Throws one Error listing each failed request; the batch is empty afterwards either way.
  void commit(Socket& sock);

 private:
  struct Request {
    MsgPtr msg;
    std::string what;
    bool tolerate_absent = false;
    bool tolerate_exists = false;
  };
  void push(MsgPtr msg, std::string what, bool tolerate_absent = false,
            bool tolerate_exists = false);
  std::vector<Request> requests_;
};

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
