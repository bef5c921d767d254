#include "plugins/agent/blocks.h"

#include <algorithm>

#include "common/error.h"
#include "common/files.h"
#include "common/netconf.h"

namespace cni::agent {

using json = nlohmann::json;

std::string prefix_id(const Prefix& p) {
  return p.network().addr().str() + "-" + std::to_string(p.len());
}

std::optional<Prefix> parse_prefix_id(const std::string& id) {
  auto dash = id.rfind('-');
  if (dash == std::string::npos) return std::nullopt;
  std::string text = id.substr(0, dash) + "/" + id.substr(dash + 1);
  auto p = Prefix::parse(text);
  if (!p || p->network() != *p) return std::nullopt;
  return p;
}

void check_block_size(const Prefix& range, int block_len, const std::string& where) {
  int bits = range.addr().bits();
  if (block_len < range.len() || block_len > bits - 2) {
    throw_config(where + ": " + std::to_string(block_len) +
                 " must be between the range's prefix "
                 "length " +
                 std::to_string(range.len()) + " and " + std::to_string(bits - 2));
  }
}

uint64_t block_count(const Prefix& range, int block_len, uint64_t cap) {
  int shift = block_len - range.len();
  if (shift >= 63) return cap;
  return std::min<uint64_t>(uint64_t{1} << shift, cap);
}

Prefix nth_block(const Prefix& range, int block_len, uint64_t i) {
  IpAddr base = range.network().addr();
  uint8_t bytes[16];
  std::copy(base.bytes(), base.bytes() + base.byte_len(), bytes);
  // Add i << (bits - block_len) to the address, byte by byte from the right.
  int host_bits = base.bits() - block_len;
  int byte = base.byte_len() - 1 - host_bits / 8;
  unsigned __int128 carry = static_cast<unsigned __int128>(i) << (host_bits % 8);
  for (; byte >= 0 && carry; --byte) {
    unsigned __int128 sum = bytes[byte] + (carry & 0xff);
    bytes[byte] = static_cast<uint8_t>(sum & 0xff);
    carry = (carry >> 8) + (sum >> 8);
  }
  return Prefix(IpAddr::from_bytes(base.family(), bytes), block_len);
}

json claims_json(const std::vector<Claim>& cs) {
  json a = json::array();
  for (const Claim& c : cs) a.push_back({{"range", c.range.str()}, {"block", c.block.str()}});
  return a;
}

namespace {

std::vector<Claim> claims_from(const json& a, const std::string& path) {
  std::vector<Claim> out;
  if (!a.is_array()) return out;
  for (const json& e : a) {
    auto r = e.is_object() ? Prefix::parse(e.value("range", "")) : std::nullopt;
    auto b = e.is_object() ? Prefix::parse(e.value("block", "")) : std::nullopt;
    if (!r || !b || !r->contains(b->addr())) {
      throw Error(kErrIo, "bad claim in " + path, e.dump());
    }
    out.push_back({r->network(), b->network()});
  }
  return out;
}

}  // namespace

ClaimState ClaimState::load(const std::string& path) {
  ClaimState s;
  auto text = read_file(path);
  if (!text) return s;
  json j = parse_bounded(*text);
  if (!j.is_object()) throw Error(kErrIo, "cannot parse " + path);
  s.node = j.value("node", "");
  s.claims = claims_from(j.value("claims", json::array()), path);
  s.releasing = claims_from(j.value("releasing", json::array()), path);
  return s;
}

void ClaimState::save(const std::string& path) const {
  json j = {{"node", node}, {"claims", claims_json(claims)}, {"releasing", claims_json(releasing)}};
  atomic_write(path, j.dump(2) + "\n", 0600);
}

std::vector<Prefix> ClaimState::blocks_in(const Prefix& range) const {
  std::vector<Prefix> out;
  for (const Claim& c : claims) {
    if (c.range == range.network()) out.push_back(c.block);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace cni::agent
