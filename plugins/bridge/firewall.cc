#include "plugins/bridge/firewall.h"

#include <linux/netfilter/nf_conntrack_common.h>

#include <algorithm>
#include <set>

#include "common/error.h"
#include "common/ip.h"
#include "common/mac.h"
#include "common/nft.h"

namespace cni::bridge {
namespace {

using nft::Bytes;
using nft::Element;
using nft::Family;
using nft::NftTransaction;
using nft::Rule;
using nft::Verdict;

constexpr Family kInet = Family::kInet;
constexpr Family kBridgeFamily = Family::kBridge;

// inet table: per-bridge policy (grows with networks) and per-attachment masquerade.
constexpr const char* kBridges = "bridges";         // ifname: every bridge of this table
constexpr const char* kInternal = "internal";       // ifname: internal=true bridges
constexpr const char* kIsolated = "isolated";       // ifname: isolate=true bridges
constexpr const char* kSameBridge = "same_bridge";  // ifname . ifname : accept | drop (icc)
constexpr const char* kMasq4 = "masq4";             // ipv4_addr: containers with ipMasq
constexpr const char* kMasq6 = "masq6";
constexpr const char* kMasqOwn4 = "masq_own4";  // ipv4_addr . ifname: container . its bridge
constexpr const char* kMasqOwn6 = "masq_own6";
constexpr const char* kNoMasq4 = "nomasq4";  // ipv4_addr . ipv4_addr interval: container . CIDR
constexpr const char* kNoMasq6 = "nomasq6";
constexpr const char* kOverlays = "overlays";  // ifname: bridges with an overlay, VXLAN devices
// ifname . ipv4_addr . ipv4_addr . inet_proto . inet_service: bridge . container . peer . port
// that the container may connect to through icc=false (README: Links).
constexpr const char* kLinks4 = "links4";
constexpr const char* kForward = "forward";
constexpr const char* kIccFalse = "icc_false";  // regular chain: same_bridge's icc=false verdict
constexpr const char* kPostrouting = "postrouting";
// bridge table: macspoofchk.
constexpr const char* kSpoofPorts = "spoof_ports";      // ifname: host veths checked
constexpr const char* kSpoofAllowed = "spoof_allowed";  // ifname . ether_addr
constexpr const char* kPrerouting = "prerouting";

const std::vector<nft::SetSpec>& inet_sets() {
  static const std::vector<nft::SetSpec> sets = {
      {kBridges, {nft::kTypeIfname}, {}, false, 0},
      {kInternal, {nft::kTypeIfname}, {}, false, 0},
      {kIsolated, {nft::kTypeIfname}, {}, false, 0},
      {kSameBridge, {nft::kTypeIfname, nft::kTypeIfname}, {}, true, 0},
      {kMasq4, {nft::kTypeIpv4Addr}, {}, false, 0},
      {kMasq6, {nft::kTypeIpv6Addr}, {}, false, 0},
      {kMasqOwn4, {nft::kTypeIpv4Addr, nft::kTypeIfname}, {}, false, 0},
      {kMasqOwn6, {nft::kTypeIpv6Addr, nft::kTypeIfname}, {}, false, 0},
      {kNoMasq4, {nft::kTypeIpv4Addr, nft::kTypeIpv4Addr}, {}, false, NFT_SET_INTERVAL},
      {kNoMasq6, {nft::kTypeIpv6Addr, nft::kTypeIpv6Addr}, {}, false, NFT_SET_INTERVAL},
      {kOverlays, {nft::kTypeIfname}, {}, false, 0},
      {kLinks4,
       {nft::kTypeIfname, nft::kTypeIpv4Addr, nft::kTypeIpv4Addr, nft::kTypeInetProto,
        nft::kTypeInetService},
       {},
       false,
       0},
  };
  return sets;
}

const std::vector<nft::SetSpec>& bridge_sets() {
  static const std::vector<nft::SetSpec> sets = {
      {kSpoofPorts, {nft::kTypeIfname}, {}, false, 0},
      {kSpoofAllowed, {nft::kTypeIfname, nft::kTypeEtherAddr}, {}, false, 0},
  };
  return sets;
}

struct RuleDef {
  std::string comment;
  Rule rule;
};

struct ChainDef {
  nft::ChainSpec spec;
  std::vector<RuleDef> rules;
};

// `ct status dnat`: the connection was DNATed (portmap's published ports, any DNAT).
Rule& ct_dnat(Rule& r) {
  return r.ct(NFT_CT_STATUS)
      .bitwise(nft::host32(IPS_DST_NAT), nft::host32(0))
      .cmp(NFT_CMP_NEQ, nft::host32(0));
}

// A new rule at the end of an inet chain of `table`, identified by its comment.
Rule& add_rule(ChainDef& c, const std::string& table, std::string comment) {
  c.rules.push_back({std::move(comment), Rule(kInet, table, c.spec.name)});
  return c.rules.back().rule;
}

// Reached from same_bridge for an icc=false bridge (in and out through it): the links that
// containers declared, then drop. The key starts with the bridge, so a link holds on its own
// bridge only. A reply matches the link with its addresses and ports swapped, and only once
// conntrack has seen the container's packet (`ct state established`): the peer can answer but
// never open a connection itself.
ChainDef icc_false_chain(const std::string& table) {
  ChainDef icc_false{{kIccFalse, std::nullopt}, {}};
  add_rule(icc_false, table, "link v4")
      .nfproto(NFPROTO_IPV4)
      .meta(NFT_META_OIFNAME, nft::reg32(0))
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, nft::reg32(4))
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, nft::reg32(5))
      .meta(NFT_META_L4PROTO, nft::reg32(6))
      .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, nft::reg32(7))
      .lookup(kLinks4, nft::reg32(0))
      .verdict(Verdict::accept());
  add_rule(icc_false, table, "link replies v4")
      .ct_state(NF_CT_STATE_BIT(IP_CT_ESTABLISHED))
      .nfproto(NFPROTO_IPV4)
      .meta(NFT_META_OIFNAME, nft::reg32(0))
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, nft::reg32(4))
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, nft::reg32(5))
      .meta(NFT_META_L4PROTO, nft::reg32(6))
      .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, nft::reg32(7))
      .lookup(kLinks4, nft::reg32(0))
      .verdict(Verdict::accept());
  add_rule(icc_false, table, "icc=false").verdict(Verdict::drop());
  return icc_false;
}

// Forward path. Every drop below needs one of our bridges on the input or output side, so
// traffic that does not touch a tether bridge is never dropped here. An accept ends only this
// table's evaluation: other tables still see the packet (README: FORWARD policy DROP).
ChainDef forward_chain(const std::string& table) {
  ChainDef fwd{{kForward, nft::Hook{NF_INET_FORWARD, 0, "filter", NF_ACCEPT}}, {}};
  // Same bridge in and out (routed between two ports of one bridge, or bridged with
  // br_netfilter): accept, or drop for icc=false -- DNATed traffic included, as in Docker's
  // nftables model, so that a neighbour is unreachable through the host's published ports as
  // well, whether or not br_netfilter is on (README: ICC). Decided first, so that the rules
  // below only ever see traffic between two different interfaces.
  add_rule(fwd, table, "same bridge: icc")
      .meta(NFT_META_IIFNAME, nft::reg32(0))
      .meta(NFT_META_OIFNAME, nft::reg32(4))
      .lookup(kSameBridge, nft::reg32(0), nft::kRegVerdict);
  add_rule(fwd, table, "internal: nothing leaves")
      .meta(NFT_META_IIFNAME)
      .lookup(kInternal)
      .verdict(Verdict::drop());
  add_rule(fwd, table, "internal: nothing enters")
      .meta(NFT_META_OIFNAME)
      .lookup(kInternal)
      .verdict(Verdict::drop());
  ct_dnat(add_rule(fwd, table, "published ports stay reachable")).verdict(Verdict::accept());
  add_rule(fwd, table, "isolate: not to other bridges")
      .meta(NFT_META_IIFNAME)
      .lookup(kIsolated)
      .meta(NFT_META_OIFNAME)
      .lookup(kBridges)
      .verdict(Verdict::drop());
  add_rule(fwd, table, "isolate: not from other bridges")
      .meta(NFT_META_OIFNAME)
      .lookup(kIsolated)
      .meta(NFT_META_IIFNAME)
      .lookup(kBridges)
      .verdict(Verdict::drop());
  // Two overlays (or an overlay and its own bridge's neighbour overlay on this host) never
  // reach each other; an overlay's own bridge and VXLAN devices were accepted above.
  add_rule(fwd, table, "overlay: not between overlays")
      .meta(NFT_META_IIFNAME)
      .lookup(kOverlays)
      .meta(NFT_META_OIFNAME)
      .lookup(kOverlays)
      .verdict(Verdict::drop());
  return fwd;
}

// Masquerade: a container address with ipMasq, leaving through anything but its own bridge.
ChainDef postrouting_chain(const std::string& table) {
  ChainDef post{{kPostrouting, nft::Hook{NF_INET_POST_ROUTING, 100, "nat", NF_ACCEPT}}, {}};
  add_rule(post, table, "no masquerade for multicast v4")
      .nfproto(NFPROTO_IPV4)
      .daddr(*Prefix::parse("224.0.0.0/4"))
      .verdict(Verdict::ret());
  add_rule(post, table, "no masquerade for multicast v6")
      .nfproto(NFPROTO_IPV6)
      .daddr(*Prefix::parse("ff00::/8"))
      .verdict(Verdict::ret());
  add_rule(post, table, "own bridge v4")
      .nfproto(NFPROTO_IPV4)
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, nft::reg32(0))
      .meta(NFT_META_OIFNAME, nft::reg32(1))
      .lookup(kMasqOwn4, nft::reg32(0))
      .verdict(Verdict::ret());
  add_rule(post, table, "own bridge v6")
      .nfproto(NFPROTO_IPV6)
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 8, 16, nft::reg32(0))
      .meta(NFT_META_OIFNAME, nft::reg32(4))
      .lookup(kMasqOwn6, nft::reg32(0))
      .verdict(Verdict::ret());
  add_rule(post, table, "ipMasqExclude v4")
      .nfproto(NFPROTO_IPV4)
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4, nft::reg32(0))
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, nft::reg32(1))
      .lookup(kNoMasq4, nft::reg32(0))
      .verdict(Verdict::ret());
  add_rule(post, table, "ipMasqExclude v6")
      .nfproto(NFPROTO_IPV6)
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 8, 16, nft::reg32(0))
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16, nft::reg32(4))
      .lookup(kNoMasq6, nft::reg32(0))
      .verdict(Verdict::ret());
  add_rule(post, table, "ipMasq v4")
      .nfproto(NFPROTO_IPV4)
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4)
      .lookup(kMasq4)
      .masquerade();
  add_rule(post, table, "ipMasq v6")
      .nfproto(NFPROTO_IPV6)
      .payload(NFT_PAYLOAD_NETWORK_HEADER, 8, 16)
      .lookup(kMasq6)
      .masquerade();
  return post;
}

// The fixed rules. Their comments identify them: ADD rewrites a chain whose comments differ.
std::vector<ChainDef> inet_chains(const std::string& table) {
  std::vector<ChainDef> chains;
  chains.push_back(icc_false_chain(table));
  chains.push_back(forward_chain(table));
  chains.push_back(postrouting_chain(table));
  return chains;
}

std::vector<ChainDef> bridge_chains(const std::string& table) {
  // Frames from a checked port must carry the container's MAC (the reference's macspoofchk).
  ChainDef pre{{kPrerouting, nft::Hook{NF_INET_PRE_ROUTING, -300, "filter", NF_ACCEPT}}, {}};
  pre.rules.push_back({"macspoofchk", Rule(kBridgeFamily, table, kPrerouting)});
  pre.rules.back()
      .rule.meta(NFT_META_IIFNAME)
      .lookup(kSpoofPorts)
      .meta(NFT_META_IIFNAME, nft::reg32(0))
      .payload(NFT_PAYLOAD_LL_HEADER, 6, 6, nft::reg32(4))
      .lookup(kSpoofAllowed, nft::reg32(0), std::nullopt, /*invert=*/true)
      .verdict(Verdict::drop());
  std::vector<ChainDef> chains;
  chains.push_back(std::move(pre));
  return chains;
}

std::vector<std::string> comments_of(const ChainDef& c) {
  std::vector<std::string> out;
  for (const RuleDef& r : c.rules) out.push_back(r.comment);
  return out;
}

std::vector<std::string> comments_of(const std::vector<nft::RuleInfo>& rules) {
  std::vector<std::string> out;
  for (const nft::RuleInfo& r : rules) out.push_back(r.comment);
  return out;
}

// Creates the table, its sets and chains when missing, and rewrites a chain whose rules are not
// the expected ones. When everything is in place it queues nothing.
void ensure_skeleton(NftTransaction& tx, Family family, const std::string& table,
                     const std::vector<nft::SetSpec>& sets, std::vector<ChainDef> chains) {
  std::vector<std::optional<std::vector<nft::RuleInfo>>> present;
  bool complete = true;
  for (ChainDef& c : chains) {
    present.push_back(tx.list_rules(family, table, c.spec.name));
    complete = complete && present.back() && comments_of(*present.back()) == comments_of(c);
  }
  if (complete) return;
  tx.add_table(family, table);
  for (const nft::SetSpec& s : sets) tx.add_set(family, table, s);
  for (size_t i = 0; i < chains.size(); ++i) {
    if (!present[i]) tx.add_chain(family, table, chains[i].spec);
  }
  for (size_t i = 0; i < chains.size(); ++i) {
    if (present[i] && comments_of(*present[i]) == comments_of(chains[i])) continue;
    if (present[i]) tx.flush_chain(family, table, chains[i].spec.name);
    for (RuleDef& r : chains[i].rules) {
      r.rule.comment(r.comment);
      tx.add_rule(r.rule);
    }
  }
}

Bytes iface_pair(const std::string& iface) {
  return nft::concat({nft::ifname(iface), nft::ifname(iface)});
}

// Elements, each with the set it belongs to.
using Placed = std::vector<std::pair<const char*, Element>>;

// The state file keeps the masqueraded addresses as text.
IpAddr state_ip(const std::string& text) {
  std::optional<IpAddr> ip = IpAddr::parse(text);
  if (!ip) throw Error(kErrInternal, "invalid address in the attachment's state", text);
  return *ip;
}

// One attachment's elements, set by set.
Placed masq_elements(const AttachmentState& s) {
  Placed out;
  for (const std::string& text : s.masq_ips) {
    const IpAddr ip = state_ip(text);
    const bool v6 = !ip.is_v4();
    out.push_back({v6 ? kMasq6 : kMasq4, Element{nft::addr(ip), {}, std::nullopt}});
    for (const std::string& iface : s.fw_ifaces) {
      out.push_back({v6 ? kMasqOwn6 : kMasqOwn4,
                     Element{nft::concat({nft::addr(ip), nft::ifname(iface)}), {}, std::nullopt}});
    }
    for (const std::string& cidr : s.masq_exclude) {
      const std::optional<Prefix> p = Prefix::parse(cidr);
      if (!p) throw Error(kErrInternal, "invalid CIDR in the attachment's state", cidr);
      if (p->addr().is_v4() != ip.is_v4()) continue;
      Element el{nft::concat({nft::addr(ip), nft::addr(p->first())}), {}, std::nullopt};
      el.key_end = nft::concat({nft::addr(ip), nft::addr(p->last())});
      out.push_back({v6 ? kNoMasq6 : kNoMasq4, std::move(el)});
    }
  }
  return out;
}

Bytes mac_bytes(const std::string& text) {
  auto mac = Mac::parse(text);
  if (!mac) throw Error(kErrInternal, "invalid MAC address", text);
  return {mac->bytes().begin(), mac->bytes().end()};
}

Placed spoof_elements(const AttachmentState& s) {
  if (!s.spoofchk) return {};
  return {
      {kSpoofPorts, Element{nft::ifname(s.host_veth), {}, std::nullopt}},
      {kSpoofAllowed,
       Element{
           nft::concat({nft::ifname(s.host_veth), mac_bytes(s.container_mac)}), {}, std::nullopt}}};
}

void add_all(NftTransaction& tx, Family family, const std::string& table, const Placed& elements) {
  for (const auto& [set, el] : elements) tx.add_elements(family, table, set, {el});
}

bool present(NftTransaction& tx, Family family, const std::string& table, const char* set,
             const Element& el) {
  Element probe{el.key, {}, std::nullopt};
  probe.key_end = el.key_end;
  return tx.get_element(family, table, set, probe).has_value();
}

bool present(NftTransaction& tx, Family family, const std::string& table, const char* set,
             const Bytes& key) {
  return present(tx, family, table, set, Element{key, {}, std::nullopt});
}

// Queues the deletion of those of `elements` that are there (none are when the set or the table
// is missing). Read first, by key, because deleting an absent element fails the whole batch, and
// a batch that deletes anything costs an RCU grace period when its socket is released
// (common/mnl.h): a DEL that finds nothing left commits nothing.
void remove_present(NftTransaction& tx, Family family, const std::string& table,
                    const Placed& elements) {
  std::set<std::pair<std::string, Bytes>> queued;
  for (const auto& [set, el] : elements) {
    if (queued.count({set, el.key}) == 0 && present(tx, family, table, set, el)) {
      tx.delete_elements(family, table, set, {el});
      queued.insert({set, el.key});
    }
  }
}

// Makes `key` a member of a plain set of the inet table or not; queues nothing when it is
// already as wanted.
void set_member(NftTransaction& tx, const std::string& table, const char* set, const Bytes& key,
                bool member) {
  if (present(tx, kInet, table, set, key) == member) return;
  const Element el{key, {}, std::nullopt};
  if (member) {
    tx.add_elements(kInet, table, set, {el});
  } else {
    tx.delete_elements(kInet, table, set, {el});
  }
}

// The icc verdict of a bridge (its ifname . ifname pair) in the same_bridge map.
std::optional<Verdict> icc_verdict(NftTransaction& tx, const std::string& table,
                                   const Bytes& pair) {
  auto e = tx.get_element(kInet, table, kSameBridge, Element{pair, {}, std::nullopt});
  if (!e) return std::nullopt;
  return e->verdict.value_or(Verdict{});
}

// A bridge's same_bridge verdict: accept, or the icc_false chain (links, then drop). A `goto`,
// so that the chain's verdicts end the forward chain's evaluation as a vmap `drop` did.
Verdict icc_want(const BridgePolicy& policy) {
  return policy.icc ? Verdict::accept() : Verdict::go_to(kIccFalse);
}

Placed link_elements(const AttachmentState& s) {
  Placed out;
  for (const LinkRule& l : s.links) {
    for (const std::string& iface : s.fw_ifaces) {
      out.push_back({kLinks4, Element{nft::concat({nft::ifname(iface), nft::addr(state_ip(l.src)),
                                                   nft::addr(state_ip(l.peer)), nft::u8(l.proto),
                                                   nft::be16(l.port)}),
                                      {},
                                      std::nullopt}});
    }
  }
  return out;
}

// The inet table's elements of one attachment.
Placed inet_elements(const AttachmentState& s) {
  Placed out = masq_elements(s);
  const Placed links = link_elements(s);
  out.insert(out.end(), links.begin(), links.end());
  return out;
}

// The elements of `old` that `now` does not have.
Placed minus(const Placed& old, const Placed& now) {
  Placed out;
  for (const auto& o : old) {
    bool kept = std::any_of(now.begin(), now.end(), [&](const auto& n) {
      return std::string_view(n.first) == o.first && n.second.key == o.second.key;
    });
    if (!kept) out.push_back(o);
  }
  return out;
}

}  // namespace

void NftFirewall::add(const BridgePolicy& policy, const AttachmentState& state,
                      const std::optional<AttachmentState>& replaced) const {
  const std::set<std::string> ifaces(policy.ifaces.begin(), policy.ifaces.end());
  nft::run([&](NftTransaction& tx) {
    ensure_skeleton(tx, kInet, table_, inet_sets(), inet_chains(table_));
    const Verdict want = icc_want(policy);
    auto set_verdict = [&](const Bytes& pair) {
      const std::optional<Verdict> have = icc_verdict(tx, table_, pair);
      if (have && *have != want) {
        tx.delete_elements(kInet, table_, kSameBridge, {Element{pair, {}, std::nullopt}});
      }
      if (!have || *have != want) {
        tx.add_elements(kInet, table_, kSameBridge, {Element{pair, {}, want}});
      }
    };
    const std::set<std::string> links(policy.overlay_links.begin(), policy.overlay_links.end());
    for (const std::string& iface : ifaces) {
      set_verdict(iface_pair(iface));
      for (const std::string& link : links) {
        set_verdict(nft::concat({nft::ifname(iface), nft::ifname(link)}));
        set_verdict(nft::concat({nft::ifname(link), nft::ifname(iface)}));
      }
    }
    std::set<std::string> members = ifaces;
    members.insert(links.begin(), links.end());
    for (const std::string& iface : members) {
      const Bytes name = nft::ifname(iface);
      set_member(tx, table_, kBridges, name, true);
      set_member(tx, table_, kInternal, name, policy.internal);
      set_member(tx, table_, kIsolated, name, policy.isolate);
      set_member(tx, table_, kOverlays, name, !links.empty());
    }
    if (replaced) {
      remove_present(tx, kInet, table_, minus(inet_elements(*replaced), inet_elements(state)));
    }
    add_all(tx, kInet, table_, inet_elements(state));

    const Placed stale_spoof =
        replaced ? minus(spoof_elements(*replaced), spoof_elements(state)) : Placed{};
    if (state.spoofchk || (!stale_spoof.empty() && tx.table_exists(kBridgeFamily, table_))) {
      ensure_skeleton(tx, kBridgeFamily, table_, bridge_sets(), bridge_chains(table_));
      remove_present(tx, kBridgeFamily, table_, stale_spoof);
      add_all(tx, kBridgeFamily, table_, spoof_elements(state));
    }
  });
}

void NftFirewall::remove(const std::vector<AttachmentState>& states) const {
  std::optional<mnl::Socket> sock;
  remove(states, sock);
}

void NftFirewall::remove(const std::vector<AttachmentState>& states,
                         std::optional<mnl::Socket>& sock) const {
  Placed masq, spoof;
  for (const AttachmentState& s : states) {
    const Placed m = inet_elements(s);
    masq.insert(masq.end(), m.begin(), m.end());
    const Placed sp = spoof_elements(s);
    spoof.insert(spoof.end(), sp.begin(), sp.end());
  }
  if (masq.empty() && spoof.empty()) return;
  if (!sock) sock.emplace(mnl::Socket::netfilter());
  nft::run(*sock, [&](NftTransaction& tx) {
    remove_present(tx, kInet, table_, masq);
    remove_present(tx, kBridgeFamily, table_, spoof);
  });
}

void NftFirewall::remove_bridge(const std::vector<std::string>& ifaces,
                                const std::vector<std::string>& overlay_links) const {
  const std::set<std::string> names(ifaces.begin(), ifaces.end());
  nft::run([&](NftTransaction& tx) {
    auto drop_pair = [&](const Bytes& pair) {
      if (icc_verdict(tx, table_, pair)) {
        tx.delete_elements(kInet, table_, kSameBridge, {Element{pair, {}, std::nullopt}});
      }
    };
    for (const std::string& iface : names) {
      drop_pair(iface_pair(iface));
      for (const std::string& link : overlay_links) {
        drop_pair(nft::concat({nft::ifname(iface), nft::ifname(link)}));
        drop_pair(nft::concat({nft::ifname(link), nft::ifname(iface)}));
      }
      for (const char* set : {kBridges, kInternal, kIsolated, kOverlays}) {
        set_member(tx, table_, set, nft::ifname(iface), false);
      }
    }
  });
}

namespace {

// A problem for each chain of `chains` that is missing or does not hold tether's rules.
void check_chains(NftTransaction& tx, const std::string& table, Family family, const char* fam,
                  const std::vector<ChainDef>& chains, std::vector<std::string>& problems) {
  for (const ChainDef& c : chains) {
    auto rules = tx.list_rules(family, table, c.spec.name);
    if (!rules) {
      problems.push_back(std::string("chain ") + fam + " " + table + " " + c.spec.name +
                         " is missing");
    } else if (comments_of(*rules) != comments_of(c)) {
      problems.push_back(std::string("chain ") + fam + " " + table + " " + c.spec.name +
                         " does not hold tether's rules");
    }
  }
}

// A problem for each element or set membership of one bridge interface that is not `policy`'s.
void check_bridge_iface(NftTransaction& tx, const std::string& table, const BridgePolicy& policy,
                        const std::string& iface, std::vector<std::string>& problems) {
  const Verdict want = icc_want(policy);
  const Bytes name = nft::ifname(iface);
  if (icc_verdict(tx, table, iface_pair(iface)) != want) {
    problems.push_back("bridge " + iface + ": icc element missing or wrong in " + kSameBridge);
  }
  if (!present(tx, kInet, table, kBridges, name)) {
    problems.push_back("bridge " + iface + " is not in " + kBridges);
  }
  if (present(tx, kInet, table, kInternal, name) != policy.internal) {
    problems.push_back("bridge " + iface + ": membership of set internal is wrong");
  }
  if (present(tx, kInet, table, kIsolated, name) != policy.isolate) {
    problems.push_back("bridge " + iface + ": membership of set isolated is wrong");
  }
  for (const std::string& link : policy.overlay_links) {
    if (icc_verdict(tx, table, nft::concat({nft::ifname(iface), nft::ifname(link)})) != want ||
        icc_verdict(tx, table, nft::concat({nft::ifname(link), nft::ifname(iface)})) != want) {
      problems.push_back("bridge " + iface + ": icc elements with overlay device " + link +
                         " missing or wrong in " + kSameBridge);
    }
  }
  if (present(tx, kInet, table, kOverlays, name) != !policy.overlay_links.empty()) {
    problems.push_back("bridge " + iface + ": membership of set overlays is wrong");
  }
}

}  // namespace

std::vector<std::string> NftFirewall::verify(const BridgePolicy& policy,
                                             const AttachmentState& state) const {
  std::vector<std::string> problems;
  NftTransaction tx = NftTransaction::open();
  check_chains(tx, table_, kInet, "inet", inet_chains(table_), problems);
  for (const std::string& iface : policy.ifaces) {
    check_bridge_iface(tx, table_, policy, iface, problems);
  }
  for (const std::string& link : policy.overlay_links) {
    if (!present(tx, kInet, table_, kOverlays, nft::ifname(link))) {
      problems.push_back("overlay device " + link + " is not in " + kOverlays);
    }
  }
  for (const auto& [set, el] : inet_elements(state)) {
    if (!present(tx, kInet, table_, set, el)) {
      problems.push_back(std::string(set == kLinks4 ? "link" : "masquerade") +
                         " element missing from set " + set);
    }
  }
  if (state.spoofchk) {
    check_chains(tx, table_, kBridgeFamily, "bridge", bridge_chains(table_), problems);
    for (const auto& [set, el] : spoof_elements(state)) {
      if (!present(tx, kBridgeFamily, table_, set, el.key)) {
        problems.push_back(std::string("macspoofchk element missing from set ") + set);
      }
    }
  }
  return problems;
}

void NftFirewall::probe() {
  try {
    NftTransaction::open();
  } catch (const Error& e) {
    throw Error(kErrNotAvailable, "nftables is not available", e.what());
  }
}

}  // namespace cni::bridge
