#pragma once
// Address blocks of a cluster range (issue 11): the range (e.g. 10.32.0.0/12) is cut into
// blocks of one prefix length (blockSize, e.g. 24); each host claims blocks in etcd with a
// create-if-absent transaction and allocates inside them from its local lease files.
//
// In etcd, "<prefix>/blocks/<range id>/<block id>" holds the owning node's name, without a
// lease: a claim outlives the agent, a reboot and an etcd restart, so the same node name finds
// the same block again. It ends only by an explicit release (host-local GC with
// releaseEmptyBlocks, or `tether-agent release`).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"

namespace cni::agent {

// "10.32.0.0/12" -> "10.32.0.0-12" (etcd key component; ':' of IPv6 stays).
std::string prefix_id(const Prefix& p);
std::optional<Prefix> parse_prefix_id(const std::string& id);

// How many blocks of length `block_len` the range holds, capped at `cap`.
uint64_t block_count(const Prefix& range, int block_len, uint64_t cap = uint64_t{1} << 24);
// The i-th block (0-based) of the range.
Prefix nth_block(const Prefix& range, int block_len, uint64_t i);
// Checks range and block length; throws Error 7 naming `where`.
void check_block_size(const Prefix& range, int block_len, const std::string& where);

struct Claim {
  Prefix range{};  // the cluster range, masked
  Prefix block{};  // masked, inside range
  bool operator==(const Claim&) const = default;
};

// The agent's own record of its claims, "<stateDir>/claims.json", written atomically; the
// truth is etcd's, this copy lets blocks be used while etcd is down and be re-asserted after
// etcd lost its data. `releasing`: released locally, the etcd side still to do.
// [{"range": "10.32.0.0/12", "block": "10.32.1.0/24"}, ...]: claims.json's and status's form.
nlohmann::json claims_json(const std::vector<Claim>& cs);

struct ClaimState {
  std::string node{};
  std::vector<Claim> claims;
  std::vector<Claim> releasing;

  static ClaimState load(const std::string& path);  // empty when absent
  void save(const std::string& path) const;
  std::vector<Prefix> blocks_in(const Prefix& range) const;
};

}  // namespace cni::agent
