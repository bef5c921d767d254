#include "plugins/portmap/portmap.h"

#include <linux/ip.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <spdlog/spdlog.h>

#include <map>
#include <set>

#include "common/error.h"
#include "common/files.h"
#include "common/mnl.h"
#include "common/netlink.h"
#include "common/rtnl.h"
#include "common/undo.h"
#include "plugins/portmap/conntrack.h"

namespace cni::portmap {

namespace {

using nft::Family;
using nft::reg32;
constexpr Family kInet = Family::kInet;

constexpr const char* kHostports = "hostports";
constexpr const char* kPrerouting = "prerouting";
constexpr const char* kOutput = "output";
constexpr const char* kPostrouting = "postrouting";
constexpr const char* kTagPrefix = "tether-portmap layout 2";

// Per-family constants of the layout.
struct Fam {
  bool v6;
  uint8_t nfproto() const { return v6 ? NFPROTO_IPV6 : NFPROTO_IPV4; }
  uint32_t addr_len() const { return v6 ? 16 : 4; }
  uint32_t addr_words() const { return v6 ? 4 : 1; }
  uint32_t saddr_offset() const { return v6 ? 8 : 12; }
  uint32_t daddr_offset() const { return v6 ? 24 : 16; }
  nft::DataType addr_type() const { return v6 ? nft::kTypeIpv6Addr : nft::kTypeIpv4Addr; }
  Family nat_family() const { return v6 ? Family::kIpv6 : Family::kIpv4; }
  const char* dnat(bool by_ip) const {
    return v6 ? (by_ip ? kDnat6Ip : kDnat6Any) : (by_ip ? kDnat4Ip : kDnat4Any);
  }
  const char* allow(bool by_ip) const {
    return v6 ? (by_ip ? kAllow6Ip : kAllow6Any) : (by_ip ? kAllow4Ip : kAllow4Any);
  }
  const char* restrict(bool by_ip) const {
    return v6 ? (by_ip ? kRestrict6Ip : kRestrict6Any) : (by_ip ? kRestrict4Ip : kRestrict4Any);
  }
};

std::vector<nft::SetSpec> set_specs() {
  using nft::kTypeInetProto;
  using nft::kTypeInetService;
  std::vector<nft::SetSpec> out;
  for (bool v6 : {false, true}) {
    const Fam f{v6};
    const nft::DataType a = f.addr_type();
    out.push_back({f.dnat(true), {a, kTypeInetProto, kTypeInetService}, {a, kTypeInetService}});
    out.push_back({f.dnat(false), {kTypeInetProto, kTypeInetService}, {a, kTypeInetService}});
    out.push_back({f.restrict(true), {a, kTypeInetProto, kTypeInetService}});
    out.push_back({f.restrict(false), {kTypeInetProto, kTypeInetService}});
    out.push_back(
        {f.allow(true), {a, kTypeInetProto, kTypeInetService, a}, {}, false, NFT_SET_INTERVAL});
    out.push_back(
        {f.allow(false), {kTypeInetProto, kTypeInetService, a}, {}, false, NFT_SET_INTERVAL});
  }
  return out;
}

// Loads `[ip daddr .] meta l4proto . th dport` into the registers from reg32(0) on, the layout
// of the DNAT maps' keys; returns the next free 32-bit register word.
uint32_t load_port_key(nft::Rule& r, const Fam& f, bool by_ip) {
  uint32_t w = 0;
  if (by_ip) {
    r.payload(NFT_PAYLOAD_NETWORK_HEADER, f.daddr_offset(), f.addr_len(), reg32(0));
    w = f.addr_words();
  }
  r.meta(NFT_META_L4PROTO, reg32(w++));
  r.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(w++));  // th dport: tcp, udp and sctp
  return w;
}

void add_hostport_rules(nft::NftTransaction& tx, const std::string& table, const Fam& f,
                        bool by_ip) {
  // A published port restricted to some sources: drop the others. Only keys of restricted ports
  // are in the restrict set, so nothing but traffic to our published ports can be dropped.
  nft::Rule filter(kInet, table, kHostports);
  filter.nfproto(f.nfproto());
  uint32_t w = load_port_key(filter, f, by_ip);
  filter.lookup(f.restrict(by_ip), reg32(0));
  filter.payload(NFT_PAYLOAD_NETWORK_HEADER, f.saddr_offset(), f.addr_len(), reg32(w));
  filter.lookup(f.allow(by_ip), reg32(0), std::nullopt, /*invert=*/true);
  filter.counter().verdict(nft::Verdict::drop());
  tx.add_rule(filter);

  // dnat <family> to <key> map @dnat: the map yields address . port into the registers.
  nft::Rule dnat(kInet, table, kHostports);
  dnat.nfproto(f.nfproto());
  load_port_key(dnat, f, by_ip);
  dnat.lookup(f.dnat(by_ip), reg32(0), reg32(0));
  nft::NatSpec nat;
  nat.type = NFT_NAT_DNAT;
  nat.family = f.nat_family();
  nat.addr_min = reg32(0);
  nat.proto_min = reg32(f.addr_words());
  dnat.nat(nat);
  tx.add_rule(dnat);
}

void add_conditions(nft::Rule& r, const std::vector<Condition>& conditions) {
  for (const Condition& c : conditions) {
    switch (c.kind) {
      case Condition::Kind::kSaddr:
        r.saddr(c.prefix, !c.negate);
        break;
      case Condition::Kind::kDaddr:
        r.daddr(c.prefix, !c.negate);
        break;
      case Condition::Kind::kIifname:
        r.iifname(c.ifname, !c.negate);
        break;
    }
  }
}

// <conditions> fib daddr type local jump hostports, per family. In output, ::1 is left alone:
// IPv6 has no route_localnet, so DNAT of ::1 could only break host services listening there.
void add_jump_rules(nft::NftTransaction& tx, const Config& config, const char* chain, bool output,
                    const std::string& tag) {
  for (bool v6 : {false, true}) {
    nft::Rule r(kInet, config.table, chain);
    r.nfproto(Fam{v6}.nfproto());
    if (output && v6) r.daddr(*Prefix::parse("::1/128"), /*equal=*/false);
    add_conditions(r, v6 ? config.conditions_v6 : config.conditions_v4);
    r.fib_daddr_local().verdict(nft::Verdict::jump(kHostports));
    if (!v6) r.comment(tag);
    tx.add_rule(r);
  }
}

// One masquerade set and its rule, for the sources of one prefix length:
// ct status dnat <daddr> . (<saddr> & <mask>) @masq<4|6>_<len> masquerade, i.e. only connections
// DNATed to a container whose entry lists the source's network (its subnet, 127/8, or /0 with
// masqAll). Exact keys: the kernel keeps the set in a hash, whose cost per call does not grow
// with the containers in it, as an interval set's does (bench/findings.md, 6).
void queue_masq_set(nft::NftTransaction& tx, const std::string& table, const std::string& set,
                    bool v6, int len) {
  const Fam f{v6};
  tx.add_set(kInet, table, {set, {f.addr_type(), f.addr_type()}});
  nft::Rule r(kInet, table, kPostrouting);
  r.nfproto(f.nfproto());
  r.ct(NFT_CT_STATUS)
      .bitwise(nft::host32(IPS_DST_NAT), nft::host32(0))
      .cmp(NFT_CMP_NEQ, nft::host32(0));
  const uint32_t saddr = reg32(f.addr_words());
  r.payload(NFT_PAYLOAD_NETWORK_HEADER, f.daddr_offset(), f.addr_len(), reg32(0));
  r.payload(NFT_PAYLOAD_NETWORK_HEADER, f.saddr_offset(), f.addr_len(), saddr);
  if (len < static_cast<int>(f.addr_len()) * 8) {
    nft::Bytes mask(f.addr_len(), 0);
    for (int bit = 0; bit < len; ++bit) mask[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    r.bitwise(mask, nft::Bytes(f.addr_len(), 0), saddr, saddr);
  }
  r.lookup(set, reg32(0));
  r.masquerade();
  r.comment(set);
  tx.add_rule(r);
}

// The masquerade sets the plan names that the table lacks, with their rules.
void queue_masq_sets(nft::NftTransaction& tx, const std::string& table, const Plan& plan) {
  std::set<std::string> wanted;
  for (const Group& g : plan.groups) {
    for (const auto* list : {&g.keys, &g.members}) {
      for (const SetElement& e : *list) {
        if (masq_set_len(e.set)) wanted.insert(e.set);
      }
    }
  }
  if (wanted.empty()) return;
  for (const nft::RuleInfo& r :
       tx.list_rules(kInet, table, kPostrouting).value_or(std::vector<nft::RuleInfo>{})) {
    wanted.erase(r.comment);
  }
  for (const std::string& set : wanted) {
    bool v6 = false;
    const int len = *masq_set_len(set, &v6);
    queue_masq_set(tx, table, set, v6, len);
  }
}

// Makes sure the layout is there and matches this config; queues it when it is not.
void prepare_layout(nft::NftTransaction& tx, const Config& config) {
  const std::string tag = layout_tag(config);
  auto rules = tx.list_rules(kInet, config.table, kPrerouting);
  if (rules) {
    for (const nft::RuleInfo& r : *rules) {
      if (r.comment == tag) return;
    }
    for (const nft::RuleInfo& r : *rules) {
      if (r.comment.rfind("tether-portmap layout", 0) == 0) {
        throw Error(kErrInvalidConfig, "invalid network configuration",
                    "nftTable \"" + config.table +
                        "\" was set up with other conditionsV4/conditionsV6 (or by another "
                        "version): give this network its own nftTable");
      }
    }
  }
  queue_layout(tx, config);
}

std::string element_text(const SetElement& e) {
  std::string s = e.set + " key ";
  static constexpr char kDigits[] = "0123456789abcdef";
  for (uint8_t c : e.element.key) {
    s += kDigits[c >> 4];
    s += kDigits[c & 15];
  }
  return s;
}

bool same_element(const nft::Element& got, const nft::Element& want) {
  return got.key == want.key && got.data == want.data &&
         (want.key_end.empty() || got.key_end == want.key_end);
}

// The element as it is in the table, when it is there with exactly this data.
bool in_place(nft::NftTransaction& tx, const std::string& table, const SetElement& e) {
  auto got = tx.get_element(kInet, table, e.set, e.element);
  return got && same_element(*got, e.element);
}

// Elements to add or delete, batched per set: one message per set and chunk, not per element.
class ElementBatch {
 public:
  void add(const SetElement& e) { by_set_[e.set].push_back(e.element); }
  void add(const Group& g) {
    for (const SetElement& e : g.keys) add(e);
    for (const SetElement& e : g.members) add(e);
  }
  bool empty() const { return by_set_.empty(); }
  void queue_add(nft::NftTransaction& tx, const std::string& table) const {
    for (const auto& [set, elements] : by_set_) tx.add_elements(kInet, table, set, elements);
  }
  void queue_delete(nft::NftTransaction& tx, const std::string& table) const {
    for (const auto& [set, elements] : by_set_) tx.delete_elements(kInet, table, set, elements);
  }

 private:
  std::map<std::string, std::vector<nft::Element>> by_set_;
};

// Queues the deletion of what of `state` is in its table and still ours, and returns the DNAT
// keys it releases. A group whose witness is there with our data goes whole. When the witness is
// gone (removed behind the plugin's back, or never committed) and nobody else holds its key, the
// group's other elements that are still there go one by one. A witness key held with other data
// belongs to another attachment now: nothing of that group is touched.
std::set<std::pair<std::string, nft::Bytes>> queue_removal(nft::NftTransaction& tx,
                                                           const State& state,
                                                           ElementBatch& batch) {
  std::set<std::pair<std::string, nft::Bytes>> released;
  std::set<std::pair<std::string, nft::Bytes>> seen;
  for (const Group& g : state.groups) {
    const SetElement& w = g.keys.front();
    if (!seen.insert({w.set, w.element.key}).second) continue;
    auto got = tx.get_element(kInet, state.table, w.set, w.element);
    std::vector<const SetElement*> present;
    if (got && same_element(*got, w.element)) {
      for (const auto* list : {&g.keys, &g.members}) {
        for (const SetElement& e : *list) present.push_back(&e);
      }
    } else if (!got) {
      for (const auto* list : {&g.keys, &g.members}) {
        for (const SetElement& e : *list) {
          if (&e != &w && in_place(tx, state.table, e)) present.push_back(&e);
        }
      }
    }
    for (const SetElement* e : present) {
      batch.add(*e);
      if (g.exclusive) released.insert({e->set, e->element.key});
    }
  }
  return released;
}

Error conflict(const Config& config, const Group& g, const SetElement& key) {
  std::string owner = "another attachment";
  const StateStore store = state_store(config.state_dir);
  for (const Attachment& a : store.list()) {
    const std::optional<State> s = store.load(a);
    for (const Group& other : s ? s->groups : std::vector<Group>{}) {
      for (const SetElement& k : other.keys) {
        if (k.set == key.set && k.element.key == key.element.key) {
          owner = "container " + a.container_id + "/" + a.ifname + " of network " + a.network +
                  " (" + other.what + ")";
        }
      }
    }
  }
  return Error(kErrPortConflict, "portmap: host port already published",
               g.what + ": the host port is already published by " + owner);
}

// A DNAT key another attachment holds, found while the commit lock is held.
struct PortTaken {
  const Group* group;
  const SetElement* key;
};

void flush_conntrack(mnl::Socket& sock, const std::vector<FlushTarget>& targets) {
  if (targets.empty()) return;
  try {
    size_t n = flush_udp_conntrack(sock, targets);
    if (n > 0) spdlog::debug("portmap: flushed {} UDP conntrack entries", n);
  } catch (const Error& e) {
    // As in the reference: stale entries are a nuisance, not a reason to fail the call.
    spdlog::warn("portmap: cannot flush UDP conntrack entries: {}", e.what());
  }
}

std::string lock_path(const Config& config) { return config.state_dir + "/lock"; }

}  // namespace

std::string layout_tag(const Config& config) {
  if (config.conditions_v4.empty() && config.conditions_v6.empty()) return kTagPrefix;
  // The conditions' canonical text can be long; a hash keeps the comment within 127 bytes.
  std::string text;
  for (const Condition& c : config.conditions_v4) text += c.str(false) + ";";
  text += "|";
  for (const Condition& c : config.conditions_v6) text += c.str(true) + ";";
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(kTagPrefix) + " conditions " + buf;
}

void queue_layout(nft::NftTransaction& tx, const Config& config) {
  const std::string& t = config.table;
  tx.add_table(kInet, t);
  for (const nft::SetSpec& s : set_specs()) tx.add_set(kInet, t, s);
  tx.add_chain(kInet, t, {kHostports, std::nullopt});
  tx.add_chain(kInet, t, {kPrerouting, nft::Hook{NF_INET_PRE_ROUTING, -100, "nat", std::nullopt}});
  tx.add_chain(kInet, t, {kOutput, nft::Hook{NF_INET_LOCAL_OUT, -100, "nat", std::nullopt}});
  tx.add_chain(kInet, t, {kPostrouting, nft::Hook{NF_INET_POST_ROUTING, 100, "nat", std::nullopt}});
  // postrouting is not flushed: it holds one rule per masquerade set, made with the set
  // (queue_masq_sets), which the sets' elements keep needing.
  for (const char* chain : {kHostports, kPrerouting, kOutput}) tx.flush_chain(kInet, t, chain);
  // Host-address keys first: a mapping on one address wins over a wildcard on the same port.
  for (bool v6 : {false, true}) {
    add_hostport_rules(tx, t, Fam{v6}, /*by_ip=*/true);
    add_hostport_rules(tx, t, Fam{v6}, /*by_ip=*/false);
  }
  const std::string tag = layout_tag(config);
  add_jump_rules(tx, config, kPrerouting, /*output=*/false, tag);
  add_jump_rules(tx, config, kOutput, /*output=*/true, tag);
}

namespace {

// The state file for ADD: `next`, plus what of `old` the batch removes, since until the batch
// commits the file must cover the old elements too.
State covering(const State& next, const std::optional<State>& old) {
  State on_disk = next;
  if (old) {
    for (const Group& g : old->groups) {
      if (std::find(on_disk.groups.begin(), on_disk.groups.end(), g) == on_disk.groups.end()) {
        on_disk.groups.push_back(g);
      }
    }
  }
  return on_disk;
}

// ADD's batch: the layout when it is missing, the removal of what an earlier ADD of the same
// attachment (`old`) added, and the plan's elements. Throws PortTaken, queueing nothing more,
// when another attachment holds one of the plan's DNAT keys.
void queue_publish(nft::NftTransaction& tx, const Config& config, const Plan& plan,
                   const std::optional<State>& old) {
  prepare_layout(tx, config);
  queue_masq_sets(tx, config.table, plan);
  // A repeated ADD of this attachment replaces its own elements in the same batch.
  std::set<std::pair<std::string, nft::Bytes>> releasing;
  if (old) {
    ElementBatch gone;
    releasing = queue_removal(tx, *old, gone);
    gone.queue_delete(tx, config.table);
  }
  ElementBatch added;
  for (const Group& g : plan.groups) {
    if (g.exclusive) {
      for (const SetElement& k : g.keys) {
        if (releasing.count({k.set, k.element.key}) == 0 &&
            tx.get_element(kInet, config.table, k.set, k.element)) {
          throw PortTaken{&g, &k};  // named outside the lock: that reads the state dir
        }
      }
    }
    added.add(g);
  }
  added.queue_add(tx, config.table);
}

}  // namespace

// Each verb opens one netfilter socket for its nftables commit and its conntrack flush (one
// release, which may wait for a grace period: common/mnl.h), before the state lock, so that it
// is released after it.
void publish(const Config& config, const Attachment& attachment, const Plan& plan) {
  mnl::Socket sock = mnl::Socket::netfilter();
  ensure_dir(config.state_dir, 0700);
  FileLock lock = FileLock::exclusive(lock_path(config));
  const StateStore store = state_store(config.state_dir);
  std::optional<State> old = store.load(attachment);
  if (old && old->table != config.table) {
    // The config moved to another table since the last ADD: clear the old one first.
    nft::run(sock, [&](nft::NftTransaction& tx) {
      ElementBatch gone;
      queue_removal(tx, *old, gone);
      gone.queue_delete(tx, old->table);
    });
    old.reset();
  }
  const State next{attachment, config.table, plan.groups, plan.udp};

  // Recorded before the commit, so the file covers whatever the batch leaves in the table; and
  // before the commit lock, which holds only nftables work.
  store.save(attachment, covering(next, old));
  Rollback rollback;
  rollback.add("restore the portmap state file", [&] {
    if (old) {
      store.save(attachment, *old);
    } else {
      store.remove(attachment);
    }
  });
  bool built = false;  // build() finished: a failure after it may have left the batch's outcome
  try {
    nft::run(sock, [&](nft::NftTransaction& tx) {
      built = false;
      queue_publish(tx, config, plan, old);
      built = true;
    });
  } catch (const PortTaken& taken) {
    rollback.run();  // nothing was committed; the owner is named from the restored files
    throw conflict(config, *taken.group, *taken.key);
  } catch (...) {
    // The commit failed: the file keeps covering what it might have left. Otherwise build()
    // refused (another layout) and nothing was committed: the rollback restores the file.
    if (built) rollback.commit();
    throw;
  }
  rollback.commit();
  if (old) store.save(attachment, next);
  flush_conntrack(sock, plan.udp);
}

void unpublish(const Config& config, const Attachment& attachment) {
  const StateStore store = state_store(config.state_dir);
  if (!store.contains(attachment)) return;  // never published, or removed already
  mnl::Socket sock = mnl::Socket::netfilter();
  FileLock lock = FileLock::exclusive(lock_path(config));
  std::optional<State> state = store.load(attachment);
  if (state) {
    nft::run(sock, [&](nft::NftTransaction& tx) {
      ElementBatch gone;
      queue_removal(tx, *state, gone);
      gone.queue_delete(tx, state->table);
    });
  }
  store.remove(attachment);  // also a corrupt one: it names nothing, and DEL must succeed
  if (state) flush_conntrack(sock, state->udp);
  // The commit deleted elements: the socket's release would wait for their grace period, which
  // protects nothing of this call (bench/findings.md, 7).
  if (state) sock.release_detached();
}

void verify(const Config& config, const Plan& plan) {
  nft::NftTransaction tx = nft::NftTransaction::open();
  auto rules = tx.list_rules(kInet, config.table, kPrerouting);
  bool layout = false;
  for (const nft::RuleInfo& r : rules.value_or(std::vector<nft::RuleInfo>{})) {
    layout = layout || r.comment == layout_tag(config);
  }
  if (!layout) {
    throw Error(kErrNotInPlace, "portmap: nftables layout missing",
                "table inet " + config.table + " has no portmap base chains for this config");
  }
  for (const Group& g : plan.groups) {
    for (const auto* list : {&g.keys, &g.members}) {
      for (const SetElement& e : *list) {
        if (!in_place(tx, config.table, e)) {
          throw Error(kErrNotInPlace, "portmap: port mapping missing",
                      g.what + ": " + element_text(e) + " is not in table inet " + config.table);
        }
      }
    }
  }
}

void collect_garbage(const Config& config, const std::string& network,
                     const std::vector<cni::Attachment>& valid) {
  const StateStore store = state_store(config.state_dir);
  if (store.list(network).empty()) return;
  std::optional<mnl::Socket> sock;  // only when there is work; released after the lock
  FileLock lock = FileLock::exclusive(lock_path(config));
  std::vector<std::pair<Attachment, State>> stale;
  for (const Attachment& a : store.list(network)) {
    if (std::find(valid.begin(), valid.end(), cni::Attachment{a.container_id, a.ifname}) !=
        valid.end()) {
      continue;
    }
    if (std::optional<State> s = store.load(a)) {
      stale.emplace_back(a, std::move(*s));
    } else {
      store.remove(a);  // corrupt: it names nothing to remove but itself
    }
  }
  if (stale.empty()) return;
  sock.emplace(mnl::Socket::netfilter());
  nft::run(*sock, [&](nft::NftTransaction& tx) {
    std::map<std::string, ElementBatch> by_table;
    for (const auto& [a, s] : stale) queue_removal(tx, s, by_table[s.table]);
    for (const auto& [table, batch] : by_table) batch.queue_delete(tx, table);
  });
  std::vector<FlushTarget> udp;
  for (const auto& [a, s] : stale) {
    store.remove(a);
    udp.insert(udp.end(), s.udp.begin(), s.udp.end());
  }
  flush_conntrack(*sock, udp);
  sock->release_detached();
}

void check_ready(const Config& config) {
  try {
    nft::NftTransaction tx = nft::NftTransaction::open();
    tx.table_exists(kInet, config.table);
  } catch (const Error& e) {
    throw Error(kErrNotAvailable, "portmap: nftables cannot be used", e.what());
  }
  try {
    ensure_dir(config.state_dir, 0700);
    FileLock lock = FileLock::exclusive(lock_path(config));
  } catch (const Error& e) {
    throw Error(kErrNotAvailable, "portmap: state directory cannot be used", e.what());
  }
}

void enable_route_localnet(const IpAddr& container) {
  nl::Socket sock = nl::Socket::open();
  // The longest main-table route to the container names the interface packets leave by. The
  // default route is not one: a container behind it is not on this host, and the host's uplink
  // must not start accepting 127/8 from the wire.
  int best_len = 0;
  int oif = 0;
  for (const nl::Route& r : nl::list_routes(sock, AF_INET, 0, RT_TABLE_MAIN)) {
    if (r.oif == 0 || !r.dst.contains(container) || r.dst.len() <= best_len) continue;
    best_len = r.dst.len();
    oif = r.oif;
  }
  if (oif == 0) {
    // As the reference: without a route there is nothing to enable; localhost will not work.
    spdlog::warn("portmap: no host route to {}: 127.0.0.1:hostPort will not reach it",
                 container.str());
    return;
  }
  // Over rtnetlink, not /proc/sys, whose lookups cost more with every namespace on the host.
  if (auto on = nl::get_ipv4_devconf(sock, oif, IPV4_DEVCONF_ROUTE_LOCALNET)) {
    if (*on != 1) nl::set_ipv4_devconf(sock, oif, IPV4_DEVCONF_ROUTE_LOCALNET, 1);
    return;
  }
  auto link = nl::get_link(sock, oif);
  if (!link) throw Error(kErrInternal, "portmap: interface vanished", std::to_string(oif));
  const std::string key = nl::iface_sysctl("ipv4", link->name, "route_localnet");
  if (nl::read_sysctl(key).value_or("") != "1") nl::write_sysctl(key, "1");
}

}  // namespace cni::portmap
