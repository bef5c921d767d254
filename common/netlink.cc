#include "common/netlink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/route/link/veth.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/netns.h"

namespace cni::nl {
namespace {

bool is_not_found(int err) {
  err = err < 0 ? -err : err;
  return err == NLE_OBJ_NOTFOUND || err == NLE_NODEV || err == NLE_NOADDR;
}

MsgPtr new_msg(int type, int flags) {
  MsgPtr msg(nlmsg_alloc_simple(type, flags));
  if (!msg) {
    throw Error(kErrInternal, "out of memory building a netlink message");
  }
  return msg;
}

void append(nl_msg* msg, const void* data, size_t len) {
  if (nlmsg_append(msg, const_cast<void*>(data), len, NLMSG_ALIGNTO) < 0) {
    throw Error(kErrInternal, "netlink message too large");
  }
}

void put(nl_msg* msg, int attr, const void* data, size_t len) {
  if (nla_put(msg, attr, static_cast<int>(len), data) < 0) {
    throw Error(kErrInternal, "netlink message too large");
  }
}

void put_u8(nl_msg* msg, int attr, uint8_t v) { put(msg, attr, &v, sizeof v); }
void put_u32(nl_msg* msg, int attr, uint32_t v) { put(msg, attr, &v, sizeof v); }
void put_str(nl_msg* msg, int attr, const std::string& s) {
  put(msg, attr, s.c_str(), s.size() + 1);
}

nlattr* nest(nl_msg* msg, int attr) {
  nlattr* n = nla_nest_start(msg, attr | NLA_F_NESTED);
  if (n == nullptr) {
    throw Error(kErrInternal, "netlink message too large");
  }
  return n;
}

// Sends `msg`, waits for the kernel's ACK and returns 0 or a negative NLE_* code.
int send_sync(Socket& sock, MsgPtr msg) { return nl_send_sync(sock.get(), msg.release()); }

void check(int err, const std::string& what) {
  if (err < 0) {
    throw_nl(what, err);
  }
}

NlAddrPtr parse_addr(const std::string& text, int family) {
  nl_addr* a = nullptr;
  int err = nl_addr_parse(text.c_str(), family, &a);
  if (err < 0) {
    throw Error(kErrInternal, "invalid address", text + ": " + nl_geterror(err));
  }
  return NlAddrPtr(a);
}

std::vector<uint8_t> parse_mac(const std::string& mac) {
  NlAddrPtr a = parse_addr(mac, AF_LLC);
  if (nl_addr_get_len(a.get()) != 6) {
    throw Error(kErrInternal, "invalid MAC address", mac);
  }
  auto* p = static_cast<const uint8_t*>(nl_addr_get_binary_addr(a.get()));
  return {p, p + 6};
}

// Formats the binary part of an nl_addr; an absent address (len 0) is the family's zero.
std::string addr_to_string(nl_addr* a, int family) {
  char buf[INET6_ADDRSTRLEN] = {};
  uint8_t zero[16] = {};
  const void* bin = zero;
  if (a != nullptr && nl_addr_get_len(a) > 0) {
    bin = nl_addr_get_binary_addr(a);
    family = nl_addr_get_family(a);
  }
  if (inet_ntop(family, bin, buf, sizeof buf) == nullptr) {
    return {};
  }
  return buf;
}

std::string mac_to_string(nl_addr* a) {
  if (a == nullptr || nl_addr_get_len(a) != 6) {
    return {};
  }
  auto* p = static_cast<const uint8_t*>(nl_addr_get_binary_addr(a));
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", p[0], p[1], p[2], p[3], p[4],
                p[5]);
  return buf;
}

Link to_link(rtnl_link* l) {
  Link link;
  link.ifindex = rtnl_link_get_ifindex(l);
  link.name = rtnl_link_get_name(l) ? rtnl_link_get_name(l) : "";
  link.kind = rtnl_link_get_type(l) ? rtnl_link_get_type(l) : "";
  link.mac = mac_to_string(rtnl_link_get_addr(l));
  link.mtu = rtnl_link_get_mtu(l);
  link.master = rtnl_link_get_master(l);
  link.peer_ifindex = rtnl_link_get_link(l);
  link.flags = rtnl_link_get_flags(l);
  return link;
}

std::optional<Link> get_link_impl(Socket& sock, int ifindex, const char* name) {
  rtnl_link* l = nullptr;
  int err = rtnl_link_get_kernel(sock.get(), ifindex, name, &l);
  if (is_not_found(err)) {
    return std::nullopt;
  }
  check(err, "cannot get link " + (name ? std::string(name) : std::to_string(ifindex)));
  LinkPtr owned(l);
  return to_link(l);
}

ifinfomsg ifinfo(int family, int ifindex, unsigned flags = 0, unsigned change = 0) {
  ifinfomsg ifi{};
  ifi.ifi_family = static_cast<unsigned char>(family);
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = flags;
  ifi.ifi_change = change;
  return ifi;
}

// RTM_NEWLINK on an existing link: flags/change are IFF_* bits, attributes go in `fill`.
template <class Fill>
void modify_link(Socket& sock, int ifindex, unsigned flags, unsigned change,
                 const std::string& what, Fill&& fill) {
  MsgPtr msg = new_msg(RTM_NEWLINK, 0);
  ifinfomsg ifi = ifinfo(AF_UNSPEC, ifindex, flags, change);
  append(msg.get(), &ifi, sizeof ifi);
  fill(msg.get());
  check(send_sync(sock, std::move(msg)), what + " (ifindex " + std::to_string(ifindex) + ")");
}

void bridge_vlan_msg(Socket& sock, int type, int ifindex, const std::vector<BridgeVlan>& vlans,
                     bool self) {
  MsgPtr msg = new_msg(type, 0);
  ifinfomsg ifi = ifinfo(AF_BRIDGE, ifindex);
  append(msg.get(), &ifi, sizeof ifi);
  nlattr* spec = nest(msg.get(), IFLA_AF_SPEC);
  if (self) {
    uint16_t f = BRIDGE_FLAGS_SELF;
    put(msg.get(), IFLA_BRIDGE_FLAGS, &f, sizeof f);
  }
  for (const BridgeVlan& v : vlans) {
    uint16_t flags =
        (v.pvid ? BRIDGE_VLAN_INFO_PVID : 0) | (v.untagged ? BRIDGE_VLAN_INFO_UNTAGGED : 0);
    bridge_vlan_info info{};
    info.vid = v.vid;
    if (v.vid_end == 0 || v.vid_end == v.vid) {
      info.flags = flags;
      put(msg.get(), IFLA_BRIDGE_VLAN_INFO, &info, sizeof info);
      continue;
    }
    // A range is two entries, begin and end; the kernel rejects PVID on a range.
    info.flags = flags | BRIDGE_VLAN_INFO_RANGE_BEGIN;
    put(msg.get(), IFLA_BRIDGE_VLAN_INFO, &info, sizeof info);
    info.vid = v.vid_end;
    info.flags = flags | BRIDGE_VLAN_INFO_RANGE_END;
    put(msg.get(), IFLA_BRIDGE_VLAN_INFO, &info, sizeof info);
  }
  nla_nest_end(msg.get(), spec);
  check(send_sync(sock, std::move(msg)),
        std::string(type == RTM_SETLINK ? "cannot add" : "cannot delete") +
            " bridge VLANs on ifindex " + std::to_string(ifindex));
}

AddrPtr build_addr(int ifindex, const std::string& cidr) {
  NlAddrPtr local = parse_addr(cidr, AF_UNSPEC);
  int family = nl_addr_get_family(local.get());
  if (family != AF_INET && family != AF_INET6) {
    throw Error(kErrInternal, "not an IP address", cidr);
  }
  AddrPtr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), family);
  check(rtnl_addr_set_local(addr.get(), local.get()), "invalid address " + cidr);
  rtnl_addr_set_prefixlen(addr.get(), static_cast<int>(nl_addr_get_prefixlen(local.get())));
  return addr;
}

void set_ipv4_broadcast(rtnl_addr* addr) {
  nl_addr* local = rtnl_addr_get_local(addr);
  int plen = rtnl_addr_get_prefixlen(addr);
  if (nl_addr_get_family(local) != AF_INET || plen >= 31) {
    return;
  }
  uint32_t ip;
  std::memcpy(&ip, nl_addr_get_binary_addr(local), 4);
  uint32_t host_mask = plen == 0 ? 0xffffffffu : (0xffffffffu >> plen);
  uint32_t brd = htonl(ntohl(ip) | host_mask);
  NlAddrPtr b(nl_addr_build(AF_INET, &brd, 4));
  rtnl_addr_set_broadcast(addr, b.get());
}

RoutePtr build_route(const Route& r) {
  RoutePtr route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), static_cast<uint8_t>(r.family));
  rtnl_route_set_table(route.get(), r.table);
  rtnl_route_set_protocol(route.get(), r.protocol);
  rtnl_route_set_type(route.get(), r.type);
  rtnl_route_set_priority(route.get(), r.priority);
  if (r.scope) {
    rtnl_route_set_scope(route.get(), *r.scope);
  }
  NlAddrPtr dst = parse_addr(r.dst, r.family);
  check(rtnl_route_set_dst(route.get(), dst.get()), "invalid route destination " + r.dst);
  if (r.mtu != 0) {
    rtnl_route_set_metric(route.get(), RTAX_MTU, r.mtu);
  }
  if (r.advmss != 0) {
    rtnl_route_set_metric(route.get(), RTAX_ADVMSS, r.advmss);
  }
  if (r.oif != 0 || r.gateway) {
    rtnl_nexthop* nh = rtnl_route_nh_alloc();
    if (r.oif != 0) {
      rtnl_route_nh_set_ifindex(nh, r.oif);
    }
    if (r.gateway) {
      NlAddrPtr gw = parse_addr(*r.gateway, r.family);
      rtnl_route_nh_set_gateway(nh, gw.get());
    }
    rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh from here
  }
  return route;
}

Route from_route(rtnl_route* rt) {
  Route r;
  r.family = rtnl_route_get_family(rt);
  nl_addr* dst = rtnl_route_get_dst(rt);
  int plen = dst ? static_cast<int>(nl_addr_get_prefixlen(dst)) : 0;
  r.dst = addr_to_string(dst, r.family) + "/" + std::to_string(plen);
  r.table = rtnl_route_get_table(rt);
  r.priority = rtnl_route_get_priority(rt);
  r.scope = rtnl_route_get_scope(rt);
  r.protocol = rtnl_route_get_protocol(rt);
  r.type = rtnl_route_get_type(rt);
  uint32_t v = 0;
  if (rtnl_route_get_metric(rt, RTAX_MTU, &v) == 0) {
    r.mtu = v;
  }
  if (rtnl_route_get_metric(rt, RTAX_ADVMSS, &v) == 0) {
    r.advmss = v;
  }
  if (rtnl_route_get_nnexthops(rt) > 0) {
    rtnl_nexthop* nh = rtnl_route_nexthop_n(rt, 0);
    r.oif = rtnl_route_nh_get_ifindex(nh);
    if (nl_addr* gw = rtnl_route_nh_get_gateway(nh); gw != nullptr) {
      r.gateway = addr_to_string(gw, r.family);
    }
  }
  return r;
}

std::string sysctl_path(std::string_view key) {
  std::string rel(key);
  if (rel.find('/') == std::string::npos) {
    std::replace(rel.begin(), rel.end(), '.', '/');
  }
  return "/proc/sys/" + rel;
}

// IFLA_LINKINFO -> IFLA_INFO_SLAVE_DATA -> IFLA_BRPORT_* of an RTM_NEWLINK reply.
struct PortReply {
  bool found = false;
  BridgePortFlags flags;
};

int parse_port_reply(nl_msg* msg, void* arg) {
  auto* out = static_cast<PortReply*>(arg);
  nlattr* tb[IFLA_MAX + 1] = {};
  if (nlmsg_parse(nlmsg_hdr(msg), sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0 ||
      tb[IFLA_LINKINFO] == nullptr) {
    return NL_OK;
  }
  nlattr* info[IFLA_INFO_MAX + 1] = {};
  if (nla_parse_nested(info, IFLA_INFO_MAX, tb[IFLA_LINKINFO], nullptr) < 0 ||
      info[IFLA_INFO_SLAVE_KIND] == nullptr || info[IFLA_INFO_SLAVE_DATA] == nullptr ||
      std::string_view(nla_get_string(info[IFLA_INFO_SLAVE_KIND])) != "bridge") {
    return NL_OK;
  }
  nlattr* port[IFLA_BRPORT_MAX + 1] = {};
  if (nla_parse_nested(port, IFLA_BRPORT_MAX, info[IFLA_INFO_SLAVE_DATA], nullptr) < 0) {
    return NL_OK;
  }
  auto flag = [&](int attr) -> std::optional<bool> {
    if (port[attr] == nullptr) {
      return std::nullopt;
    }
    return nla_get_u8(port[attr]) != 0;
  };
  out->found = true;
  out->flags.hairpin = flag(IFLA_BRPORT_MODE);
  out->flags.isolated = flag(IFLA_BRPORT_ISOLATED);
  out->flags.learning = flag(IFLA_BRPORT_LEARNING);
  return NL_OK;
}

using CbPtr = CPtr<nl_cb, nl_cb_put>;

}  // namespace

Socket Socket::open() {
  SockPtr sock(nl_socket_alloc());
  if (!sock) {
    throw Error(kErrInternal, "cannot allocate a netlink socket");
  }
  check(nl_connect(sock.get(), NETLINK_ROUTE), "cannot open a rtnetlink socket");
  return Socket(std::move(sock));
}

bool Link::up() const { return (flags & IFF_UP) != 0; }

std::optional<Link> get_link(Socket& sock, const std::string& name) {
  return get_link_impl(sock, 0, name.c_str());
}

std::optional<Link> get_link(Socket& sock, int ifindex) {
  return get_link_impl(sock, ifindex, nullptr);
}

Link require_link(Socket& sock, const std::string& name) {
  std::optional<Link> link = get_link(sock, name);
  if (!link) {
    throw Error(kErrInternal, "link not found", name);
  }
  return *link;
}

Link ensure_bridge(Socket& sock, const BridgeSpec& spec) {
  MsgPtr msg = new_msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg ifi = ifinfo(AF_UNSPEC, 0);
  append(msg.get(), &ifi, sizeof ifi);
  put_str(msg.get(), IFLA_IFNAME, spec.name);
  if (spec.mtu != 0) {
    put_u32(msg.get(), IFLA_MTU, spec.mtu);
  }
  if (spec.mac) {
    std::vector<uint8_t> mac = parse_mac(*spec.mac);
    put(msg.get(), IFLA_ADDRESS, mac.data(), mac.size());
  }
  nlattr* linkinfo = nest(msg.get(), IFLA_LINKINFO);
  put_str(msg.get(), IFLA_INFO_KIND, "bridge");
  if (spec.vlan_filtering) {
    // Only when asked: kernels built without CONFIG_BRIDGE_VLAN_FILTERING refuse the attribute
    // even with value 0.
    nlattr* data = nest(msg.get(), IFLA_INFO_DATA);
    put_u8(msg.get(), IFLA_BR_VLAN_FILTERING, 1);
    nla_nest_end(msg.get(), data);
  }
  nla_nest_end(msg.get(), linkinfo);
  int err = send_sync(sock, std::move(msg));
  if (err == -NLE_OPNOTSUPP && spec.vlan_filtering) {
    throw Error(kErrInternal, "cannot create bridge " + spec.name,
                "VLAN filtering is not supported by this kernel (CONFIG_BRIDGE_VLAN_FILTERING)");
  }
  if (err < 0 && err != -NLE_EXIST) {
    throw_nl("cannot create bridge " + spec.name, err);
  }
  Link link = require_link(sock, spec.name);
  if (link.kind != "bridge") {
    throw Error(kErrInternal, "link exists and is not a bridge",
                spec.name + " is " + (link.kind.empty() ? "a device" : "of kind " + link.kind));
  }
  return link;
}

void set_bridge_vlan_filtering(Socket& sock, int ifindex, bool on) {
  modify_link(sock, ifindex, 0, 0, "cannot set vlan_filtering", [&](nl_msg* msg) {
    nlattr* linkinfo = nest(msg, IFLA_LINKINFO);
    put_str(msg, IFLA_INFO_KIND, "bridge");
    nlattr* data = nest(msg, IFLA_INFO_DATA);
    put_u8(msg, IFLA_BR_VLAN_FILTERING, on ? 1 : 0);
    nla_nest_end(msg, data);
    nla_nest_end(msg, linkinfo);
  });
}

Link create_veth(Socket& sock, const VethSpec& spec, const NetnsFd& peer_netns) {
  LinkPtr veth(rtnl_link_veth_alloc());
  if (!veth) {
    throw Error(kErrInternal, "cannot allocate a veth link");
  }
  rtnl_link* peer = rtnl_link_veth_get_peer(veth.get());
  LinkPtr peer_ref(peer);  // get_peer took a reference
  rtnl_link_set_name(veth.get(), spec.name.c_str());
  rtnl_link_set_name(peer, spec.peer_name.c_str());
  if (spec.mtu != 0) {
    rtnl_link_set_mtu(veth.get(), spec.mtu);
    rtnl_link_set_mtu(peer, spec.mtu);
  }
  if (spec.mac) {
    std::vector<uint8_t> mac = parse_mac(*spec.mac);
    NlAddrPtr a(nl_addr_build(AF_LLC, mac.data(), mac.size()));
    rtnl_link_set_addr(veth.get(), a.get());
  }
  if (spec.peer_mac) {
    std::vector<uint8_t> mac = parse_mac(*spec.peer_mac);
    NlAddrPtr a(nl_addr_build(AF_LLC, mac.data(), mac.size()));
    rtnl_link_set_addr(peer, a.get());
  }
  rtnl_link_set_ns_fd(peer, peer_netns.fd());
  check(rtnl_link_add(sock.get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL),
        "cannot create veth " + spec.name + " with peer " + spec.peer_name);
  return require_link(sock, spec.name);
}

void set_link_up(Socket& sock, int ifindex) {
  modify_link(sock, ifindex, IFF_UP, IFF_UP, "cannot set link up", [](nl_msg*) {});
}

void set_link_down(Socket& sock, int ifindex) {
  modify_link(sock, ifindex, 0, IFF_UP, "cannot set link down", [](nl_msg*) {});
}

void set_mtu(Socket& sock, int ifindex, unsigned mtu) {
  modify_link(sock, ifindex, 0, 0, "cannot set mtu",
              [&](nl_msg* msg) { put_u32(msg, IFLA_MTU, mtu); });
}

void set_master(Socket& sock, int ifindex, int master_ifindex) {
  modify_link(sock, ifindex, 0, 0, "cannot set master", [&](nl_msg* msg) {
    put_u32(msg, IFLA_MASTER, static_cast<uint32_t>(master_ifindex));
  });
}

void set_promisc(Socket& sock, int ifindex, bool on) {
  modify_link(sock, ifindex, on ? IFF_PROMISC : 0, IFF_PROMISC, "cannot set promisc",
              [](nl_msg*) {});
}

bool delete_link(Socket& sock, const std::string& name) {
  MsgPtr msg = new_msg(RTM_DELLINK, 0);
  ifinfomsg ifi = ifinfo(AF_UNSPEC, 0);
  append(msg.get(), &ifi, sizeof ifi);
  put_str(msg.get(), IFLA_IFNAME, name);
  int err = send_sync(sock, std::move(msg));
  if (is_not_found(err)) {
    return false;
  }
  check(err, "cannot delete link " + name);
  return true;
}

void set_bridge_port(Socket& sock, int ifindex, const BridgePortFlags& flags) {
  // libnl 3.7 has setters for hairpin and learning but not for isolation, so the whole
  // IFLA_PROTINFO is built here, as `bridge link set` does.
  MsgPtr msg = new_msg(RTM_SETLINK, 0);
  ifinfomsg ifi = ifinfo(AF_BRIDGE, ifindex);
  append(msg.get(), &ifi, sizeof ifi);
  nlattr* protinfo = nest(msg.get(), IFLA_PROTINFO);
  if (flags.hairpin) {
    put_u8(msg.get(), IFLA_BRPORT_MODE, *flags.hairpin ? 1 : 0);
  }
  if (flags.isolated) {
    put_u8(msg.get(), IFLA_BRPORT_ISOLATED, *flags.isolated ? 1 : 0);
  }
  if (flags.learning) {
    put_u8(msg.get(), IFLA_BRPORT_LEARNING, *flags.learning ? 1 : 0);
  }
  nla_nest_end(msg.get(), protinfo);
  check(send_sync(sock, std::move(msg)),
        "cannot set bridge port flags on ifindex " + std::to_string(ifindex));
}

BridgePortFlags get_bridge_port(Socket& sock, int ifindex) {
  MsgPtr msg = new_msg(RTM_GETLINK, 0);
  ifinfomsg ifi = ifinfo(AF_UNSPEC, ifindex);
  append(msg.get(), &ifi, sizeof ifi);
  const std::string what = "cannot read bridge port flags of ifindex " + std::to_string(ifindex);
  check(nl_send_auto(sock.get(), msg.get()), what);
  CbPtr sock_cb(nl_socket_get_cb(sock.get()));  // took a reference
  CbPtr cb(nl_cb_clone(sock_cb.get()));
  if (!cb) {
    throw Error(kErrInternal, what, "out of memory");
  }
  PortReply reply;
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, parse_port_reply, &reply);
  check(nl_recvmsgs(sock.get(), cb.get()), what);
  check(nl_wait_for_ack(sock.get()), what);
  if (!reply.found) {
    throw Error(kErrInternal, what, "not a bridge port");
  }
  return reply.flags;
}

void bridge_vlan_add(Socket& sock, int ifindex, const std::vector<BridgeVlan>& vlans, bool self) {
  bridge_vlan_msg(sock, RTM_SETLINK, ifindex, vlans, self);
}

void bridge_vlan_del(Socket& sock, int ifindex, const std::vector<BridgeVlan>& vlans, bool self) {
  bridge_vlan_msg(sock, RTM_DELLINK, ifindex, vlans, self);
}

void add_address(Socket& sock, int ifindex, const std::string& cidr, const AddressOptions& opts) {
  AddrPtr addr = build_addr(ifindex, cidr);
  set_ipv4_broadcast(addr.get());
  if (opts.nodad) {
    rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
  }
  int err = rtnl_addr_add(sock.get(), addr.get(), NLM_F_EXCL);
  if (err == -NLE_EXIST && opts.tolerate_exists) {
    return;
  }
  check(err, "cannot add address " + cidr + " to ifindex " + std::to_string(ifindex));
}

std::vector<Address> list_addresses(Socket& sock, int ifindex, int family) {
  nl_cache* raw = nullptr;
  check(rtnl_addr_alloc_cache(sock.get(), &raw), "cannot list addresses");
  CachePtr cache(raw);
  std::vector<Address> out;
  for (nl_object* o = nl_cache_get_first(raw); o != nullptr; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    int fam = rtnl_addr_get_family(a);
    if (rtnl_addr_get_ifindex(a) != ifindex || (family != AF_UNSPEC && fam != family)) {
      continue;
    }
    Address addr;
    addr.family = fam;
    addr.ip = addr_to_string(rtnl_addr_get_local(a), fam);
    addr.prefix_len = rtnl_addr_get_prefixlen(a);
    addr.flags = rtnl_addr_get_flags(a);
    addr.scope = rtnl_addr_get_scope(a);
    out.push_back(std::move(addr));
  }
  return out;
}

bool delete_address(Socket& sock, int ifindex, const std::string& cidr) {
  AddrPtr addr = build_addr(ifindex, cidr);
  int err = rtnl_addr_delete(sock.get(), addr.get(), 0);
  if (is_not_found(err)) {
    return false;
  }
  check(err, "cannot delete address " + cidr + " from ifindex " + std::to_string(ifindex));
  return true;
}

void add_route(Socket& sock, const Route& route, RouteMode mode) {
  RoutePtr rt = build_route(route);
  int flags = mode == RouteMode::kReplace ? NLM_F_REPLACE : NLM_F_EXCL;
  int err = rtnl_route_add(sock.get(), rt.get(), flags);
  if (err == -NLE_EXIST && mode == RouteMode::kAddOrExisting) {
    return;
  }
  check(err, "cannot add route to " + route.dst + (route.gateway ? " via " + *route.gateway : ""));
}

std::vector<Route> list_routes(Socket& sock, int family, int oif, uint32_t table) {
  nl_cache* raw = nullptr;
  check(rtnl_route_alloc_cache(sock.get(), family, 0, &raw), "cannot list routes");
  CachePtr cache(raw);
  std::vector<Route> out;
  for (nl_object* o = nl_cache_get_first(raw); o != nullptr; o = nl_cache_get_next(o)) {
    Route r = from_route(reinterpret_cast<rtnl_route*>(o));
    if (r.family != family || (oif != 0 && r.oif != oif) ||
        (table != RT_TABLE_UNSPEC && r.table != table)) {
      continue;
    }
    out.push_back(std::move(r));
  }
  return out;
}

bool delete_route(Socket& sock, const Route& route) {
  RoutePtr rt = build_route(route);
  int err = rtnl_route_delete(sock.get(), rt.get(), 0);
  if (is_not_found(err)) {
    return false;
  }
  check(err, "cannot delete route to " + route.dst);
  return true;
}

void write_sysctl(std::string_view key, std::string_view value) {
  std::string path = sysctl_path(key);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    throw_errno("cannot open sysctl " + path);
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    throw_errno("cannot write " + std::string(value) + " to sysctl " + path, n < 0 ? err : EIO);
  }
}

std::optional<std::string> read_sysctl(std::string_view key) {
  std::string path = sysctl_path(key);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return std::nullopt;
    }
    throw_errno("cannot open sysctl " + path);
  }
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  int err = errno;
  ::close(fd);
  if (n < 0) {
    throw_errno("cannot read sysctl " + path, err);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

std::string iface_sysctl(std::string_view ip_version, std::string_view ifname,
                         std::string_view knob) {
  std::string key = "net/";
  key.append(ip_version).append("/conf/").append(ifname).append("/").append(knob);
  return key;
}

}  // namespace cni::nl
