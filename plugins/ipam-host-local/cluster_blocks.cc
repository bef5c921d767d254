#include "plugins/ipam-host-local/cluster_blocks.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/agent_client.h"
#include "common/error.h"
#include "common/files.h"
#include "common/netconf.h"

namespace cni::hostlocal {

namespace {

using json = nlohmann::json;

// The cached blocks, one list per range set (by the set's cluster range).
struct Cache {
  std::string node;
  std::vector<std::pair<Prefix, std::vector<Prefix>>> sets;  // range -> blocks

  std::vector<Prefix>& blocks(const Prefix& range) {
    for (auto& [r, b] : sets) {
      if (r == range) return b;
    }
    sets.emplace_back(range, std::vector<Prefix>{});
    return sets.back().second;
  }
};

std::string cache_path(const LeaseStore& store) { return store.dir() + "/" + kBlocksFile; }

Cache load_cache(const LeaseStore& store, const cluster::ClusterConfig& c) {
  Cache cache;
  cache.node = c.node;
  auto text = read_file(cache_path(store));
  if (!text) return cache;
  json j = parse_bounded(*text);
  // A cache of another node name (the host was renamed) or one that does not parse is dropped:
  // the agent holds the truth and gives it back on the next request.
  if (!j.is_object() || j.value("node", "") != c.node || !j["sets"].is_array()) return cache;
  for (const json& s : j["sets"]) {
    auto r = s.is_object() ? Prefix::parse(s.value("range", "")) : std::nullopt;
    if (!r || !s.contains("blocks") || !s["blocks"].is_array()) continue;
    std::vector<Prefix>& out = cache.blocks(r->network());
    for (const json& b : s["blocks"]) {
      auto p = b.is_string() ? Prefix::parse(b.get<std::string>()) : std::nullopt;
      if (p && r->contains(p->addr())) out.push_back(p->network());
    }
  }
  return cache;
}

void save_cache(const LeaseStore& store, const Cache& cache) {
  json sets = json::array();
  for (const auto& [r, blocks] : cache.sets) {
    json b = json::array();
    for (const Prefix& p : blocks) b.push_back(p.str());
    sets.push_back({{"range", r.str()}, {"blocks", b}});
  }
  atomic_write(cache_path(store), json{{"node", cache.node}, {"sets", sets}}.dump() + "\n", 0644);
}

std::vector<Prefix> prefixes_from(const json& reply) {
  std::vector<Prefix> out;
  for (const json& b : reply.value("blocks", json::array())) {
    auto p = b.is_string() ? Prefix::parse(b.get<std::string>()) : std::nullopt;
    if (p) out.push_back(p->network());
  }
  std::sort(out.begin(), out.end());
  return out;
}

json have_json(const std::vector<Prefix>& blocks) {
  json a = json::array();
  for (const Prefix& p : blocks) a.push_back(p.str());
  return a;
}

// The blocks as host-local ranges: subnet = block, defaults for the rest (gateway = first
// address, the window = the block minus network and broadcast).
RangeSet ranges_of(const std::vector<Prefix>& blocks, size_t set) {
  RangeSet out;
  for (const Prefix& b : blocks) {
    Range r;
    r.subnet = b;
    r.canonicalize("invalid block of range set " + std::to_string(set) + ": ", "ipam");
    out.push_back(r);
  }
  return out;
}

bool has_free(const RangeSet& set, const std::vector<Lease>& leases) {
  uint64_t capacity = 0, used = 0;
  for (const auto& r : set) capacity += r.allocatable();
  for (const auto& l : leases) {
    const Range* r = range_for(set, l.ip);
    if (r && l.ip != r->gw()) ++used;
  }
  return used < capacity;
}

}  // namespace

Config with_blocks(LeaseStore& store, const Config& config) {
  const cluster::ClusterConfig& c = *config.cluster;
  Cache cache = load_cache(store, c);
  bool changed = false;
  std::vector<Lease> leases = store.leases();
  Config out = config;
  for (size_t i = 0; i < config.range_sets.size(); ++i) {
    Prefix range = config.range_sets[i][0].subnet.network();
    std::vector<Prefix>& blocks = cache.blocks(range);
    std::erase_if(blocks, [&](const Prefix& b) { return b.len() != config.block_size; });
    RangeSet set = ranges_of(blocks, i);
    bool asked_held = false;
    // A requested address needs no new block: it is in a held block or it is an error.
    bool requested = std::any_of(config.requested_ips.begin(), config.requested_ips.end(),
                                 [&](const IpAddr& ip) { return range.contains(ip); });
    for (int round = 0; round < 4 && !requested && !has_free(set, leases); ++round) {
      json req = {{"range", range.str()}, {"blockSize", config.block_size}};
      if (!asked_held && blocks.empty()) {
        // Nothing cached (a new data dir, or a host that restarted with its claims in the
        // agent): the agent's held blocks come from its state, without etcd.
        req["op"] = "blocks";
        asked_held = true;
      } else {
        req["op"] = "claim";
        req["have"] = have_json(blocks);
      }
      json reply = cluster::call_agent(c, req);
      std::vector<Prefix> got = prefixes_from(reply);
      if (reply.contains("block")) spdlog::info("claimed block {}", reply["block"].dump());
      if (got != blocks) {
        blocks = got;
        changed = true;
      }
      set = ranges_of(blocks, i);
    }
    if (set.empty()) {
      throw Error(kErrNotAvailable, "no address block held in " + range.str(),
                  "range set " + std::to_string(i));
    }
    out.range_sets[i] = std::move(set);
  }
  if (changed) save_cache(store, cache);
  return out;
}

void check_cluster_available(LeaseStore& store, const Config& config) {
  const cluster::ClusterConfig& c = *config.cluster;
  Cache cache = load_cache(store, c);
  std::vector<Lease> leases = store.leases();
  for (size_t i = 0; i < config.range_sets.size(); ++i) {
    Prefix range = config.range_sets[i][0].subnet.network();
    std::vector<Prefix> blocks = cache.blocks(range);
    std::erase_if(blocks, [&](const Prefix& b) { return b.len() != config.block_size; });
    if (!blocks.empty() && has_free(ranges_of(blocks, i), leases)) continue;
    json reply = cluster::call_agent(
        c, {{"op", "can_claim"}, {"range", range.str()}, {"blockSize", config.block_size}});
    if (!reply.value("free", false)) {
      throw Error(kErrNotAvailable, "no address block can be claimed in " + range.str(),
                  "range set " + std::to_string(i) + ": every /" +
                      std::to_string(config.block_size) + " is held and this host's are full");
    }
  }
}

size_t release_empty_blocks(LeaseStore& store, const Config& config) {
  const cluster::ClusterConfig& c = *config.cluster;
  Cache cache = load_cache(store, c);
  std::vector<Lease> leases = store.leases();
  size_t released = 0;
  bool changed = false;
  for (auto& [range, blocks] : cache.sets) {
    for (auto it = blocks.begin(); it != blocks.end();) {
      const Prefix& b = *it;
      bool used = std::any_of(leases.begin(), leases.end(),
                              [&](const Lease& l) { return b.contains(l.ip); });
      if (used) {
        ++it;
        continue;
      }
      try {
        cluster::call_agent(c, {{"op", "release"}, {"range", range.str()}, {"block", b.str()}});
      } catch (const Error& e) {
        // Kept in the cache: the next GC tries again. GC never fails for the cluster.
        spdlog::warn("GC: cannot release block {} now: {}", b.str(), e.what());
        ++it;
        continue;
      }
      spdlog::info("GC: released the empty block {}", b.str());
      it = blocks.erase(it);
      ++released;
      changed = true;
    }
  }
  if (changed) save_cache(store, cache);
  return released;
}

}  // namespace cni::hostlocal
