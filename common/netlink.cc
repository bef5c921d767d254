#include "common/netlink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/route/link/veth.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>

#include "common/crash_point.h"
#include "common/error.h"
#include "common/files.h"
#include "common/mac.h"
#include "common/netns.h"
#include "common/rtnl.h"

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

NlAddrPtr to_nl_addr(const IpAddr& ip, int prefix_len) {
  NlAddrPtr a(nl_addr_build(ip.af(), ip.bytes(), static_cast<size_t>(ip.byte_len())));
  if (!a) throw Error(kErrInternal, "out of memory", ip.str());
  nl_addr_set_prefixlen(a.get(), prefix_len);
  return a;
}

// An address of `family` for a route; a family that differs is the caller's mistake.
NlAddrPtr route_addr(const IpAddr& ip, int prefix_len, int family, const std::string& what) {
  if (ip.af() != family) throw Error(kErrInternal, "invalid address", what + " " + ip.str());
  return to_nl_addr(ip, prefix_len);
}

IpAddr ip_of(const void* bin, int family) {
  return IpAddr::from_bytes(family == AF_INET ? IpAddr::Family::kV4 : IpAddr::Family::kV6,
                            static_cast<const uint8_t*>(bin));
}

// The binary part of an nl_addr; an absent address (len 0) is the family's zero.
IpAddr addr_to_ip(nl_addr* a, int family) {
  static const uint8_t zero[16] = {};
  const void* bin = zero;
  if (a != nullptr && nl_addr_get_len(a) > 0) {
    family = nl_addr_get_family(a);
    if (nl_addr_get_len(a) == (family == AF_INET ? 4u : 16u)) bin = nl_addr_get_binary_addr(a);
  }
  return ip_of(bin, family);
}

std::optional<Mac> mac_of(nl_addr* a) {
  if (a == nullptr || nl_addr_get_len(a) != 6) return std::nullopt;
  return Mac::from_bytes(static_cast<const uint8_t*>(nl_addr_get_binary_addr(a)));
}

Link to_link(rtnl_link* l) {
  Link link;
  link.ifindex = rtnl_link_get_ifindex(l);
  link.name = rtnl_link_get_name(l) ? rtnl_link_get_name(l) : "";
  link.kind = rtnl_link_get_type(l) ? rtnl_link_get_type(l) : "";
  link.mac = mac_of(rtnl_link_get_addr(l));
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
  crash_point("link-changed");
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
  crash_point("bridge-vlans-changed");
}

AddrPtr build_addr(int ifindex, const Prefix& cidr) {
  NlAddrPtr local = to_nl_addr(cidr.addr(), cidr.len());
  int family = nl_addr_get_family(local.get());
  AddrPtr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), family);
  check(rtnl_addr_set_local(addr.get(), local.get()), "invalid address " + cidr.str());
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
  NlAddrPtr dst = route_addr(r.dst.addr(), r.dst.len(), r.family, "route destination");
  check(rtnl_route_set_dst(route.get(), dst.get()), "invalid route destination " + r.dst.str());
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
      NlAddrPtr gw = route_addr(*r.gateway, r.gateway->bits(), r.family, "route gateway");
      rtnl_route_nh_set_gateway(nh, gw.get());
    }
    if (r.onlink) {
      rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
    }
    rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh from here
  }
  return route;
}

// "10.1.0.0/16 via 10.0.0.1", for messages.
std::string route_text(const Route& r) {
  return r.dst.str() + (r.gateway ? " via " + r.gateway->str() : "");
}

Route from_route(rtnl_route* rt) {
  Route r;
  r.family = rtnl_route_get_family(rt);
  nl_addr* dst = rtnl_route_get_dst(rt);
  int plen = dst ? static_cast<int>(nl_addr_get_prefixlen(dst)) : 0;
  r.dst = Prefix(addr_to_ip(dst, r.family), plen);
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
    r.onlink = (rtnl_route_nh_get_flags(nh) & RTNH_F_ONLINK) != 0;
    if (nl_addr* gw = rtnl_route_nh_get_gateway(nh); gw != nullptr) {
      r.gateway = addr_to_ip(gw, r.family);
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

// The IFLA_LINKINFO -> `data_attr` attributes of an RTM_NEWLINK reply, parsed into `data`
// (max + 1 entries), when the link's `kind_attr` names `kind`; false for any other link.
bool parse_link_info(nl_msg* msg, int kind_attr, int data_attr, std::string_view kind,
                     nlattr** data, int max) {
  nlattr* tb[IFLA_MAX + 1] = {};
  if (nlmsg_parse(nlmsg_hdr(msg), sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0 ||
      tb[IFLA_LINKINFO] == nullptr) {
    return false;
  }
  nlattr* info[IFLA_INFO_MAX + 1] = {};
  if (nla_parse_nested(info, IFLA_INFO_MAX, tb[IFLA_LINKINFO], nullptr) < 0 ||
      info[kind_attr] == nullptr || info[data_attr] == nullptr ||
      std::string_view(nla_get_string(info[kind_attr])) != kind) {
    return false;
  }
  return nla_parse_nested(data, max, info[data_attr], nullptr) >= 0;
}

// IFLA_LINKINFO -> IFLA_INFO_SLAVE_DATA -> IFLA_BRPORT_* of an RTM_NEWLINK reply.
struct PortReply {
  bool found = false;
  BridgePortFlags flags;
};

int parse_port_reply(nl_msg* msg, void* arg) {
  auto* out = static_cast<PortReply*>(arg);
  nlattr* port[IFLA_BRPORT_MAX + 1] = {};
  if (!parse_link_info(msg, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA, "bridge", port,
                       IFLA_BRPORT_MAX)) {
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

CbPtr clone_cb(Socket& sock, const std::string& what) {
  CbPtr sock_cb(nl_socket_get_cb(sock.get()));  // took a reference
  CbPtr cb(nl_cb_clone(sock_cb.get()));
  if (!cb) {
    throw Error(kErrInternal, what, "out of memory");
  }
  return cb;
}

// Sends a dump request and hands every reply message to `on_msg` (until NLMSG_DONE).
template <class OnMsg>
void dump(Socket& sock, MsgPtr msg, const std::string& what, OnMsg&& on_msg) {
  check(nl_send_auto(sock.get(), msg.get()), what);
  CbPtr cb = clone_cb(sock, what);
  auto trampoline = [](nl_msg* m, void* arg) -> int {
    (*static_cast<OnMsg*>(arg))(nlmsg_hdr(m));
    return NL_OK;
  };
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, trampoline, &on_msg);
  check(nl_recvmsgs(sock.get(), cb.get()), what);
}

// IFLA_LINKINFO -> IFLA_INFO_DATA of a vxlan link in an RTM_NEWLINK reply.
struct VxlanReply {
  bool found = false;
  Vxlan vx;
};

int parse_vxlan_reply(nl_msg* msg, void* arg) {
  auto* out = static_cast<VxlanReply*>(arg);
  nlattr* vx[IFLA_VXLAN_MAX + 1] = {};
  if (!parse_link_info(msg, IFLA_INFO_KIND, IFLA_INFO_DATA, "vxlan", vx, IFLA_VXLAN_MAX)) {
    return NL_OK;
  }
  out->found = true;
  if (vx[IFLA_VXLAN_ID] != nullptr) out->vx.vni = nla_get_u32(vx[IFLA_VXLAN_ID]);
  if (vx[IFLA_VXLAN_PORT] != nullptr) out->vx.port = ntohs(nla_get_u16(vx[IFLA_VXLAN_PORT]));
  if (vx[IFLA_VXLAN_LEARNING] != nullptr) {
    out->vx.learning = nla_get_u8(vx[IFLA_VXLAN_LEARNING]) != 0;
  }
  if (vx[IFLA_VXLAN_LOCAL] != nullptr && nla_len(vx[IFLA_VXLAN_LOCAL]) == 4) {
    out->vx.local = ip_of(nla_data(vx[IFLA_VXLAN_LOCAL]), AF_INET);
  } else if (vx[IFLA_VXLAN_LOCAL6] != nullptr && nla_len(vx[IFLA_VXLAN_LOCAL6]) == 16) {
    out->vx.local = ip_of(nla_data(vx[IFLA_VXLAN_LOCAL6]), AF_INET6);
  }
  return NL_OK;
}

// NDA_DST: 4 or 16 bytes; nullopt for anything else.
std::optional<IpAddr> ip_attr(const nlattr* a) {
  const int len = nla_len(a);
  if (len != 4 && len != 16) return std::nullopt;
  return ip_of(nla_data(a), len == 4 ? AF_INET : AF_INET6);
}

std::optional<Mac> mac_attr(const nlattr* a) {
  if (nla_len(a) != 6) return std::nullopt;
  return Mac::from_bytes(static_cast<const uint8_t*>(nla_data(a)));
}

// RTM_NEWNEIGH/RTM_DELNEIGH for one neighbour (family AF_INET/AF_INET6) or FDB entry
// (AF_BRIDGE, NTF_SELF: the VXLAN device's own table, not a bridge's).
MsgPtr neigh_msg(int type, int flags, int family, int ifindex, const IpAddr* ip, const Mac* mac) {
  MsgPtr msg = new_msg(type, flags);
  ndmsg nd{};
  nd.ndm_ifindex = ifindex;
  nd.ndm_state = NUD_PERMANENT;
  if (family == AF_BRIDGE) {
    nd.ndm_family = AF_BRIDGE;
    nd.ndm_flags = NTF_SELF;
  } else {
    nd.ndm_family = static_cast<uint8_t>(ip != nullptr ? ip->af() : AF_UNSPEC);
  }
  append(msg.get(), &nd, sizeof nd);
  if (mac != nullptr) put(msg.get(), NDA_LLADDR, mac->bytes().data(), mac->bytes().size());
  if (ip != nullptr) put(msg.get(), NDA_DST, ip->bytes(), static_cast<size_t>(ip->byte_len()));
  return msg;
}

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

namespace {

// RTM_NEWLINK creating link `name` (EXCL), with its MTU (0: the kernel's) and MAC when given.
MsgPtr new_link_msg(const std::string& name, uint32_t mtu, const std::optional<Mac>& mac) {
  MsgPtr msg = new_msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg ifi = ifinfo(AF_UNSPEC, 0);
  append(msg.get(), &ifi, sizeof ifi);
  put_str(msg.get(), IFLA_IFNAME, name);
  if (mtu != 0) put_u32(msg.get(), IFLA_MTU, mtu);
  if (mac) put(msg.get(), IFLA_ADDRESS, mac->bytes().data(), mac->bytes().size());
  return msg;
}

}  // namespace

Link ensure_bridge(Socket& sock, const BridgeSpec& spec) {
  MsgPtr msg = new_link_msg(spec.name, spec.mtu, spec.mac);
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
  auto set_addr = [](rtnl_link* link, const std::optional<Mac>& mac) {
    if (!mac) return;
    NlAddrPtr a(nl_addr_build(AF_LLC, mac->bytes().data(), mac->bytes().size()));
    rtnl_link_set_addr(link, a.get());
  };
  set_addr(veth.get(), spec.mac);
  set_addr(peer, spec.peer_mac);
  rtnl_link_set_ns_fd(peer, peer_netns.fd());
  check(rtnl_link_add(sock.get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL),
        "cannot create veth " + spec.name + " with peer " + spec.peer_name);
  crash_point("veth-created");
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
  crash_point("link-deleted");
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
  crash_point("bridge-port-set");
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

void add_address(Socket& sock, int ifindex, const Prefix& cidr, const AddressOptions& opts) {
  AddrPtr addr = build_addr(ifindex, cidr);
  set_ipv4_broadcast(addr.get());
  if (opts.nodad) {
    rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
  }
  int err = rtnl_addr_add(sock.get(), addr.get(), NLM_F_EXCL);
  if (err == -NLE_EXIST && opts.tolerate_exists) {
    return;
  }
  check(err, "cannot add address " + cidr.str() + " to ifindex " + std::to_string(ifindex));
  crash_point("address-added");
}

std::vector<Address> list_addresses(Socket& sock, int ifindex, int family) {
  return dump_addresses(sock, ifindex, family);  // rtnl.h: filtered by the kernel
}

bool delete_address(Socket& sock, int ifindex, const Prefix& cidr) {
  AddrPtr addr = build_addr(ifindex, cidr);
  int err = rtnl_addr_delete(sock.get(), addr.get(), 0);
  if (is_not_found(err)) {
    return false;
  }
  check(err, "cannot delete address " + cidr.str() + " from ifindex " + std::to_string(ifindex));
  crash_point("address-deleted");
  return true;
}

void add_route(Socket& sock, const Route& route, RouteMode mode) {
  RoutePtr rt = build_route(route);
  int flags = mode == RouteMode::kReplace ? NLM_F_REPLACE : NLM_F_EXCL;
  int err = rtnl_route_add(sock.get(), rt.get(), flags);
  if (err == -NLE_EXIST && mode == RouteMode::kAddOrExisting) {
    return;
  }
  check(err, "cannot add route to " + route_text(route));
  crash_point("route-added");
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
    out.push_back(r);
  }
  return out;
}

bool delete_route(Socket& sock, const Route& route) {
  RoutePtr rt = build_route(route);
  int err = rtnl_route_delete(sock.get(), rt.get(), 0);
  if (is_not_found(err)) {
    return false;
  }
  check(err, "cannot delete route to " + route.dst.str());
  return true;
}

std::optional<Vxlan> get_vxlan(Socket& sock, const std::string& name) {
  std::optional<Link> link = get_link(sock, name);
  if (!link || link->kind != "vxlan") {
    return std::nullopt;
  }
  MsgPtr msg = new_msg(RTM_GETLINK, 0);
  ifinfomsg ifi = ifinfo(AF_UNSPEC, link->ifindex);
  append(msg.get(), &ifi, sizeof ifi);
  const std::string what = "cannot read VXLAN device " + name;
  check(nl_send_auto(sock.get(), msg.get()), what);
  CbPtr cb = clone_cb(sock, what);
  VxlanReply reply;
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, parse_vxlan_reply, &reply);
  int err = nl_recvmsgs(sock.get(), cb.get());
  if (is_not_found(err)) {
    return std::nullopt;  // deleted in between
  }
  check(err, what);
  check(nl_wait_for_ack(sock.get()), what);
  if (!reply.found) {
    return std::nullopt;
  }
  reply.vx.link = *link;
  return reply.vx;
}

namespace {

bool vxlan_matches(const Vxlan& have, const VxlanSpec& want) {
  return have.vni == want.vni && have.port == want.port && have.local == want.local &&
         !have.learning;
}

int create_vxlan(Socket& sock, const VxlanSpec& spec) {
  MsgPtr msg = new_link_msg(spec.name, spec.mtu, spec.mac);
  nlattr* linkinfo = nest(msg.get(), IFLA_LINKINFO);
  put_str(msg.get(), IFLA_INFO_KIND, "vxlan");
  nlattr* data = nest(msg.get(), IFLA_INFO_DATA);
  put_u32(msg.get(), IFLA_VXLAN_ID, spec.vni);
  const uint16_t port = htons(spec.port);
  put(msg.get(), IFLA_VXLAN_PORT, &port, sizeof port);
  put(msg.get(), spec.local.is_v4() ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, spec.local.bytes(),
      static_cast<size_t>(spec.local.byte_len()));
  put_u8(msg.get(), IFLA_VXLAN_LEARNING, 0);
  if (spec.underlay_ifindex != 0) {
    put_u32(msg.get(), IFLA_VXLAN_LINK, static_cast<uint32_t>(spec.underlay_ifindex));
  }
  nla_nest_end(msg.get(), data);
  nla_nest_end(msg.get(), linkinfo);
  return send_sync(sock, std::move(msg));
}

void set_mac(Socket& sock, int ifindex, const Mac& mac) {
  modify_link(sock, ifindex, 0, 0, "cannot set MAC address",
              [&](nl_msg* msg) { put(msg, IFLA_ADDRESS, mac.bytes().data(), mac.bytes().size()); });
}

}  // namespace

Link ensure_vxlan(Socket& sock, const VxlanSpec& spec, bool* created) {
  if (spec.vni == 0 || spec.vni > 0xffffff) {
    throw Error(kErrInternal, "invalid VNI", std::to_string(spec.vni));
  }
  bool fresh = false;
  for (int attempt = 0;; ++attempt) {
    std::optional<Link> link = get_link(sock, spec.name);
    if (link && link->kind != "vxlan") {
      throw Error(kErrInternal, "link exists and is not a VXLAN device",
                  spec.name + " is " + (link->kind.empty() ? "a device" : "of kind " + link->kind));
    }
    std::optional<Vxlan> have = link ? get_vxlan(sock, spec.name) : std::nullopt;
    if (have && vxlan_matches(*have, spec)) {
      break;
    }
    if (have) {
      delete_link(sock, spec.name);
    }
    int err = create_vxlan(sock, spec);
    if (err == 0) {
      fresh = true;
      break;
    }
    // Another caller created it first: look again (once) whether theirs is what we want.
    if (err != -NLE_EXIST || attempt > 0) {
      throw_nl("cannot create VXLAN device " + spec.name + " (vni " + std::to_string(spec.vni) +
                   ", port " + std::to_string(spec.port) + ", local " + spec.local.str() + ")",
               err);
    }
  }
  Link link = require_link(sock, spec.name);
  if (spec.mtu != 0 && link.mtu != spec.mtu) {
    set_mtu(sock, link.ifindex, spec.mtu);
  }
  if (spec.mac && link.mac != *spec.mac) {
    set_mac(sock, link.ifindex, *spec.mac);
  }
  if (!link.up()) {
    set_link_up(sock, link.ifindex);
  }
  if (created != nullptr) {
    *created = fresh;
  }
  return require_link(sock, spec.name);
}

std::vector<Neighbour> list_neighbours(Socket& sock, int ifindex, int family) {
  MsgPtr msg = new_msg(RTM_GETNEIGH, NLM_F_DUMP);
  ndmsg nd{};
  nd.ndm_family = static_cast<uint8_t>(family);
  append(msg.get(), &nd, sizeof nd);
  std::vector<Neighbour> out;
  dump(sock, std::move(msg), "cannot list neighbours", [&](nlmsghdr* hdr) {
    auto* n = static_cast<ndmsg*>(nlmsg_data(hdr));
    nlattr* tb[NDA_MAX + 1] = {};
    if (n->ndm_ifindex != ifindex || n->ndm_family != family ||
        nlmsg_parse(hdr, sizeof(ndmsg), tb, NDA_MAX, nullptr) < 0 || tb[NDA_DST] == nullptr) {
      return;
    }
    std::optional<IpAddr> ip = ip_attr(tb[NDA_DST]);
    if (!ip) return;
    Neighbour nb;
    nb.ip = *ip;
    if (tb[NDA_LLADDR] != nullptr) nb.mac = mac_attr(tb[NDA_LLADDR]);
    nb.state = n->ndm_state;
    out.push_back(nb);
  });
  return out;
}

std::vector<FdbEntry> list_fdb(Socket& sock, int ifindex) {
  MsgPtr msg = new_msg(RTM_GETNEIGH, NLM_F_DUMP);
  ndmsg nd{};
  nd.ndm_family = AF_BRIDGE;
  append(msg.get(), &nd, sizeof nd);
  std::vector<FdbEntry> out;
  dump(sock, std::move(msg), "cannot list FDB entries", [&](nlmsghdr* hdr) {
    auto* n = static_cast<ndmsg*>(nlmsg_data(hdr));
    nlattr* tb[NDA_MAX + 1] = {};
    if (n->ndm_ifindex != ifindex || nlmsg_parse(hdr, sizeof(ndmsg), tb, NDA_MAX, nullptr) < 0 ||
        tb[NDA_DST] == nullptr || tb[NDA_LLADDR] == nullptr) {
      return;
    }
    std::optional<IpAddr> dst = ip_attr(tb[NDA_DST]);
    std::optional<Mac> mac = mac_attr(tb[NDA_LLADDR]);
    if (dst && mac) out.push_back({*mac, *dst, n->ndm_state});
  });
  return out;
}

void Batch::push(MsgPtr msg, std::string what, bool tolerate_absent, bool tolerate_exists) {
  requests_.push_back({std::move(msg), std::move(what), tolerate_absent, tolerate_exists});
}

void Batch::set_neighbour(int ifindex, const IpAddr& ip, const Mac& mac) {
  push(neigh_msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_INET, ifindex, &ip, &mac),
       "set neighbour " + ip.str() + " lladdr " + mac.str());
}

void Batch::delete_neighbour(int ifindex, const IpAddr& ip) {
  push(neigh_msg(RTM_DELNEIGH, 0, AF_INET, ifindex, &ip, nullptr), "delete neighbour " + ip.str(),
       true);
}

void Batch::set_fdb(int ifindex, const Mac& mac, const IpAddr& dst) {
  push(neigh_msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_BRIDGE, ifindex, &dst, &mac),
       "set FDB entry " + mac.str() + " dst " + dst.str());
}

void Batch::delete_fdb(int ifindex, const Mac& mac, const IpAddr& dst) {
  push(neigh_msg(RTM_DELNEIGH, 0, AF_BRIDGE, ifindex, &dst, &mac),
       "delete FDB entry " + mac.str() + " dst " + dst.str(), true);
}

void Batch::add_route(const Route& route, RouteMode mode) {
  RoutePtr rt = build_route(route);
  nl_msg* raw = nullptr;
  int flags = NLM_F_CREATE | (mode == RouteMode::kReplace ? NLM_F_REPLACE : NLM_F_EXCL);
  check(rtnl_route_build_add_request(rt.get(), flags, &raw), "cannot build a route request");
  push(MsgPtr(raw), "add route " + route_text(route), false, mode == RouteMode::kAddOrExisting);
}

void Batch::delete_route(const Route& route) {
  RoutePtr rt = build_route(route);
  nl_msg* raw = nullptr;
  check(rtnl_route_build_del_request(rt.get(), 0, &raw), "cannot build a route request");
  push(MsgPtr(raw), "delete route " + route.dst.str(), true);
}

void Batch::add_address(int ifindex, const Prefix& cidr) {
  AddrPtr addr = build_addr(ifindex, cidr);
  set_ipv4_broadcast(addr.get());
  nl_msg* raw = nullptr;
  check(rtnl_addr_build_add_request(addr.get(), NLM_F_CREATE | NLM_F_EXCL, &raw),
        "cannot build an address request");
  push(MsgPtr(raw), "add address " + cidr.str(), false, true);
}

void Batch::delete_address(int ifindex, const Prefix& cidr) {
  AddrPtr addr = build_addr(ifindex, cidr);
  nl_msg* raw = nullptr;
  check(rtnl_addr_build_delete_request(addr.get(), 0, &raw), "cannot build an address request");
  push(MsgPtr(raw), "delete address " + cidr.str(), true);
}

namespace {

struct AckState {
  size_t acked = 0;
  std::map<uint32_t, int> errors;  // seq -> negative errno
};

int on_ack(nl_msg*, void* arg) {
  ++static_cast<AckState*>(arg)->acked;
  return NL_OK;
}

int on_error(sockaddr_nl*, nlmsgerr* e, void* arg) {
  auto* st = static_cast<AckState*>(arg);
  ++st->acked;
  st->errors[e->msg.nlmsg_seq] = e->error;
  return NL_SKIP;
}

bool is_absent_errno(int err) {
  return err == -ENOENT || err == -ESRCH || err == -ENODEV || err == -EADDRNOTAVAIL;
}

}  // namespace

void Batch::commit(Socket& sock) {
  std::vector<Request> requests = std::move(requests_);
  requests_.clear();
  // ACKs queue up in the socket's receive buffer while we send; a bounded window keeps them
  // from overflowing it however large the batch is.
  constexpr size_t kWindow = 64;
  std::vector<std::string> failures;
  CbPtr cb = clone_cb(sock, "cannot commit a netlink batch");
  for (size_t begin = 0; begin < requests.size(); begin += kWindow) {
    const size_t end = std::min(requests.size(), begin + kWindow);
    std::map<uint32_t, size_t> by_seq;
    for (size_t i = begin; i < end; ++i) {
      check(nl_send_auto(sock.get(), requests[i].msg.get()),
            "cannot send netlink request: " + requests[i].what);
      by_seq[nlmsg_hdr(requests[i].msg.get())->nlmsg_seq] = i;
    }
    AckState st;
    nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, &st);
    nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &st);
    while (st.acked < end - begin) {
      int err = nl_recvmsgs(sock.get(), cb.get());
      if (err < 0) {
        throw_nl("cannot read netlink acknowledgements", err);
      }
    }
    for (const auto& [seq, err] : st.errors) {
      auto it = by_seq.find(seq);
      if (it == by_seq.end()) continue;
      const Request& r = requests[it->second];
      if ((r.tolerate_absent && is_absent_errno(err)) || (r.tolerate_exists && err == -EEXIST)) {
        continue;
      }
      failures.push_back(r.what + ": " + std::strerror(-err));
    }
  }
  if (!failures.empty()) {
    std::string all;
    for (const std::string& f : failures) all += (all.empty() ? "" : "; ") + f;
    throw Error(kErrInternal, "netlink requests failed", all);
  }
}

void write_sysctl(std::string_view key, std::string_view value) {
  std::string path = sysctl_path(key);
  Fd fd = Fd::open(path, O_WRONLY, 0, kErrInternal);
  ssize_t n = ::write(fd.get(), value.data(), value.size());
  int err = errno;
  if (n != static_cast<ssize_t>(value.size())) {
    throw_errno("cannot write " + std::string(value) + " to sysctl " + path, n < 0 ? err : EIO);
  }
  crash_point("sysctl-written");
}

std::optional<std::string> read_sysctl(std::string_view key) {
  std::string path = sysctl_path(key);
  Fd fd = Fd::open_if_exists(path, O_RDONLY, kErrInternal);
  if (!fd) {
    return std::nullopt;
  }
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  int err = errno;
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
