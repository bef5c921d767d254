#include "common/overlay.h"

#include <linux/neighbour.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "common/error.h"
#include "common/files.h"
#include "common/netconf.h"
#include "common/skel.h"

namespace cni::overlay {
namespace {

std::vector<Prefix> normalized(std::vector<Prefix> ranges) {
  for (Prefix& p : ranges) p = p.network();
  std::sort(ranges.begin(), ranges.end());
  ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
  return ranges;
}

std::string spec_path(const std::string& dir, uint32_t vni) {
  return dir + "/" + std::to_string(vni) + ".json";
}

// The VTEP address of a block: its network address (flannel's choice). Peers route the block via
// it and resolve it to the owner's VTEP MAC with a permanent neighbour.
IpAddr vtep_ip(const Prefix& block) { return block.first(); }

}  // namespace

nlohmann::json Overlay::to_json() const {
  nlohmann::json r = nlohmann::json::array();
  for (const Prefix& p : ranges) r.push_back(p.str());
  return {{"device", device},     {"vni", vni}, {"port", port},
          {"local", local.str()}, {"mtu", mtu}, {"ranges", r}};
}

Overlay Overlay::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw_config(where + ": expected an object");
  Overlay o;
  o.vni = static_cast<uint32_t>(get_int(j, "vni", where, 1, 0xffffff).value_or(0));
  if (o.vni == 0) throw_config(key_path(where, "vni") + ": missing");
  o.port = static_cast<uint16_t>(get_int(j, "port", where, 1, 65535).value_or(kDefaultPort));
  o.device = get_string(j, "device", where).value_or(default_device(o.vni));
  if (auto why = invalid_ifname_reason(o.device)) {
    throw_config(key_path(where, "device") + ": " + *why);
  }
  o.mtu = static_cast<unsigned>(get_int(j, "mtu", where, 0, 65535).value_or(0));
  if (auto local = get_string(j, "local", where)) {
    auto ip = IpAddr::parse(*local);
    if (!ip) throw_config(key_path(where, "local") + ": invalid address \"" + *local + "\"");
    o.local = *ip;
  }
  if (auto ranges = get_string_list(j, "ranges", where)) {
    for (const std::string& r : *ranges) {
      auto p = Prefix::parse(r);
      if (!p) throw_config(key_path(where, "ranges") + ": invalid CIDR \"" + r + "\"");
      o.ranges.push_back(*p);
    }
  }
  o.ranges = normalized(std::move(o.ranges));
  return o;
}

bool Overlay::carries(const Prefix& block) const {
  return std::any_of(ranges.begin(), ranges.end(), [&](const Prefix& r) {
    return r.addr().family() == block.addr().family() && r.len() <= block.len() &&
           r.contains(block.first());
  });
}

std::string default_device(uint32_t vni) { return "tvx" + std::to_string(vni); }

Mac vtep_mac(const IpAddr& underlay) {
  const uint8_t* b = underlay.bytes() + underlay.byte_len() - 4;
  return Mac({0x02, 0x74, b[0], b[1], b[2], b[3]});
}

nl::Link underlay_link(nl::Socket& sock, const IpAddr& local) {
  for (const nl::Address& a : nl::list_addresses(sock, 0, local.af())) {
    if (a.ip == local) {
      if (auto link = nl::get_link(sock, a.ifindex)) return *link;
    }
  }
  throw Error(kErrInternal, "no link holds the underlay address", local.str());
}

unsigned effective_mtu(nl::Socket& sock, const Overlay& o) {
  if (o.mtu != 0) return o.mtu;
  const nl::Link link = underlay_link(sock, o.local);
  if (link.mtu <= kVxlanOverhead + 68) {
    throw Error(kErrInternal, "underlay MTU too small for VXLAN",
                link.name + " has MTU " + std::to_string(link.mtu));
  }
  return link.mtu - kVxlanOverhead;
}

nl::Link ensure_device(nl::Socket& sock, const Overlay& o, bool* created) {
  nl::VxlanSpec spec;
  spec.name = o.device.empty() ? default_device(o.vni) : o.device;
  spec.vni = o.vni;
  spec.port = o.port;
  spec.local = o.local;
  spec.underlay_ifindex = underlay_link(sock, o.local).ifindex;
  spec.mtu = effective_mtu(sock, o);
  spec.mac = vtep_mac(o.local);
  return nl::ensure_vxlan(sock, spec, created);
}

namespace {

// What the peers call for, keyed the way the kernel's objects are.
struct Wanted {
  std::map<Mac, IpAddr> fdb;       // mac -> underlay
  std::map<IpAddr, Mac> neigh;     // vtep ip -> mac
  std::map<Prefix, IpAddr> route;  // block -> vtep ip
  std::set<Prefix> addr;           // local block.0/32
};

// What the device has: entries that are as wanted (ok), and stale ones to remove.
struct Found {
  std::vector<nl::FdbEntry> stale_fdb;
  std::vector<IpAddr> stale_neigh;
  std::vector<Prefix> stale_addr;
  std::vector<nl::Route> stale_route;
  std::set<Mac> fdb_ok;
  std::set<IpAddr> neigh_ok;
  std::set<Prefix> route_ok, addr_ok;
};

Wanted wanted_of(const Overlay& o, const std::vector<Peer>& peers, const std::string& self_node) {
  Wanted want;
  for (const Peer& p : peers) {
    for (const Prefix& b : p.blocks) {
      if (!b.addr().is_v4() || !o.carries(b)) continue;
      if (p.node == self_node) {
        want.addr.insert(Prefix(vtep_ip(b), 32));
        continue;
      }
      want.neigh[vtep_ip(b)] = p.vtep_mac;
      want.route[b.network()] = vtep_ip(b);
    }
    if (p.node != self_node) want.fdb[p.vtep_mac] = p.underlay;
  }
  return want;
}

void read_fdb(nl::Socket& sock, int ifx, const Wanted& want, Found& found) {
  for (const nl::FdbEntry& e : nl::list_fdb(sock, ifx)) {
    auto it = want.fdb.find(e.mac);
    if (it != want.fdb.end() && it->second == e.dst && found.fdb_ok.count(e.mac) == 0) {
      found.fdb_ok.insert(e.mac);
    } else {
      found.stale_fdb.push_back(e);
    }
  }
}

void read_neighbours(nl::Socket& sock, int ifx, const Wanted& want, Found& found) {
  for (const nl::Neighbour& n : nl::list_neighbours(sock, ifx, AF_INET)) {
    if ((n.state & NUD_PERMANENT) == 0) continue;  // the kernel's own, not ours
    auto it = want.neigh.find(n.ip);
    if (it == want.neigh.end()) {
      found.stale_neigh.push_back(n.ip);
    } else if (it->second == n.mac) {
      found.neigh_ok.insert(n.ip);
    }  // a wrong MAC is replaced below
  }
}

void read_routes(nl::Socket& sock, int ifx, const Wanted& want, Found& found) {
  for (const nl::Route& r : nl::list_routes(sock, AF_INET, ifx)) {
    if (r.protocol != kRouteProtocol) continue;
    auto it = want.route.find(r.dst);
    if (it == want.route.end()) {
      found.stale_route.push_back(r);
    } else if (r.gateway == it->second && r.onlink) {
      found.route_ok.insert(r.dst);
    }  // a wrong gateway is replaced below
  }
}

void read_addresses(nl::Socket& sock, int ifx, const Wanted& want, Found& found) {
  for (const nl::Address& a : nl::list_addresses(sock, ifx, AF_INET)) {
    if (want.addr.count(a.cidr()) != 0) {
      found.addr_ok.insert(a.cidr());
    } else {
      found.stale_addr.push_back(a.cidr());
    }
  }
}

// Additions and replacements first, so that an entry being changed is never briefly missing:
// FDB, neighbours, then routes, so a route never points at a neighbour or a MAC the device
// cannot reach yet.
void queue_additions(nl::Batch& batch, int ifx, const Wanted& want, const Found& found) {
  for (const auto& [mac, dst] : want.fdb) {
    if (found.fdb_ok.count(mac) == 0) batch.set_fdb(ifx, mac, dst);
  }
  for (const auto& [ip, mac] : want.neigh) {
    if (found.neigh_ok.count(ip) == 0) batch.set_neighbour(ifx, ip, mac);
  }
  for (const auto& [dst, gw] : want.route) {
    if (found.route_ok.count(dst) != 0) continue;
    nl::Route r;
    r.dst = dst;
    r.gateway = gw;
    r.oif = ifx;
    r.onlink = true;
    r.protocol = kRouteProtocol;
    batch.add_route(r, nl::RouteMode::kReplace);
  }
  for (const Prefix& a : want.addr) {
    if (found.addr_ok.count(a) == 0) batch.add_address(ifx, a);
  }
}

// Removals, in the reverse order of the additions.
void queue_removals(nl::Batch& batch, int ifx, const Found& found) {
  for (const nl::Route& r : found.stale_route) batch.delete_route(r);
  for (const Prefix& a : found.stale_addr) batch.delete_address(ifx, a);
  for (const IpAddr& ip : found.stale_neigh) batch.delete_neighbour(ifx, ip);
  for (const nl::FdbEntry& e : found.stale_fdb) batch.delete_fdb(ifx, e.mac, e.dst);
}

}  // namespace

SyncStats sync_peers(nl::Socket& sock, const Overlay& o, const std::vector<Peer>& peers,
                     const std::string& self_node) {
  const std::string name = o.device.empty() ? default_device(o.vni) : o.device;
  const int ifx = nl::require_link(sock, name).ifindex;
  const Wanted want = wanted_of(o, peers, self_node);
  Found found;
  read_fdb(sock, ifx, want, found);
  read_neighbours(sock, ifx, want, found);
  read_routes(sock, ifx, want, found);
  read_addresses(sock, ifx, want, found);
  // One batch: what is added or replaced, then what is removed.
  nl::Batch batch;
  SyncStats stats;
  queue_additions(batch, ifx, want, found);
  stats.added = batch.size();
  queue_removals(batch, ifx, found);
  stats.removed = batch.size() - stats.added;
  if (!batch.empty()) batch.commit(sock);
  return stats;
}

SyncStats sync_all(nl::Socket& sock, const std::string& dir, const std::vector<Peer>& peers,
                   const std::string& self_node) {
  SyncStats total;
  std::string failures;
  for (const Overlay& o : load_overlays(dir)) {
    try {
      ensure_device(sock, o);
      const SyncStats s = sync_peers(sock, o, peers, self_node);
      total.added += s.added;
      total.removed += s.removed;
    } catch (const std::exception& e) {
      failures += (failures.empty() ? "" : "; ") + o.device + ": " + e.what();
    }
  }
  if (!failures.empty()) throw Error(kErrInternal, "overlay sync failed", failures);
  return total;
}

Overlay save_overlay(const std::string& dir, const Overlay& o) {
  ensure_dir(dir);
  const FileLock lock = FileLock::exclusive(dir + "/lock");
  Overlay merged = o;
  if (merged.device.empty()) merged.device = default_device(o.vni);
  const std::optional<Overlay> old = load_overlay(dir, o.vni);
  if (old) {
    if (old->device == merged.device && old->port == merged.port && old->local == merged.local) {
      merged.ranges.insert(merged.ranges.end(), old->ranges.begin(), old->ranges.end());
    }
  }
  merged.ranges = normalized(std::move(merged.ranges));
  if (old && old->to_json() == merged.to_json()) {
    return merged;  // unchanged: no write on every ADD
  }
  atomic_write(spec_path(dir, o.vni), merged.to_json().dump() + "\n");
  return merged;
}

std::optional<Overlay> load_overlay(const std::string& dir, uint32_t vni) {
  const std::string path = spec_path(dir, vni);
  std::optional<std::string> text = read_file(path);
  if (!text) return std::nullopt;
  nlohmann::json j = parse_bounded(*text);
  if (j.is_discarded()) throw Error(kErrDecode, "cannot parse overlay spec", path);
  return Overlay::from_json(j, path);
}

std::vector<Overlay> load_overlays(const std::string& dir) {
  std::vector<Overlay> out;
  for (const std::string& name : list_dir(dir)) {
    if (name.size() <= 5 || name.substr(name.size() - 5) != ".json") continue;
    try {
      const unsigned long vni = std::stoul(name.substr(0, name.size() - 5));
      if (auto o = load_overlay(dir, static_cast<uint32_t>(vni))) out.push_back(std::move(*o));
    } catch (const std::exception& e) {
      spdlog::warn("overlay spec {}/{} skipped: {}", dir, name, e.what());
    }
  }
  return out;
}

bool remove_overlay(const std::string& dir, uint32_t vni) {
  return remove_file(spec_path(dir, vni));
}

}  // namespace cni::overlay
