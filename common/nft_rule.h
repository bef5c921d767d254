#pragma once
// nftables values and the rule builder: what a rule or a set element is made of, before it is
// queued into a batch (common/nft.h).
// clang-format off
#include <netinet/in.h>  // first: libc-compat.h then keeps linux/in.h from redefining it
#include <linux/netfilter.h>
// clang-format on
#include <linux/netfilter/nf_tables.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"

struct nftnl_rule;

namespace cni::nft {

enum class Family : uint8_t {
  kInet = NFPROTO_INET,
  kIpv4 = NFPROTO_IPV4,
  kIpv6 = NFPROTO_IPV6,
  kBridge = NFPROTO_BRIDGE,
};

using Bytes = std::vector<uint8_t>;

// Value encoders for cmp data and set keys. Network-header fields are big endian; meta and ct
// values (mark, ct state, l4proto as u8) are host order, as the kernel loads them.
Bytes be16(uint16_t v);
Bytes be32(uint32_t v);
Bytes host32(uint32_t v);
Bytes u8(uint8_t v);
Bytes addr(const IpAddr& a);            // network order: 4 bytes for IPv4, 16 for IPv6
Bytes ifname(const std::string& name);  // NUL padded to IFNAMSIZ, as `iifname "x"` compares
// A concatenated key or value: each field padded to 4 bytes, the layout of consecutive 32-bit
// registers (so `ip daddr . tcp dport` is concat({addr(a), be16(p)}), 8 bytes).
Bytes concat(const std::vector<Bytes>& fields);

// Registers. A concatenation loads its fields into consecutive 32-bit registers: reg32(0),
// reg32(ceil(len0/4)), ...; reg32(0) is the same storage as kReg1.
constexpr uint32_t kRegVerdict = NFT_REG_VERDICT;
constexpr uint32_t kReg1 = NFT_REG_1;
constexpr uint32_t reg32(unsigned word) { return NFT_REG32_00 + word; }

struct Verdict {
  int code = NF_ACCEPT;  // NF_ACCEPT, NF_DROP, NFT_RETURN, NFT_JUMP, NFT_GOTO, NFT_CONTINUE
  std::string chain{};   // for jump and goto
  static Verdict accept() { return {NF_ACCEPT, {}}; }
  static Verdict drop() { return {NF_DROP, {}}; }
  static Verdict ret() { return {NFT_RETURN, {}}; }
  static Verdict jump(std::string c) { return {NFT_JUMP, std::move(c)}; }
  static Verdict go_to(std::string c) { return {NFT_GOTO, std::move(c)}; }
  bool operator==(const Verdict&) const = default;
};

struct NatSpec {
  uint32_t type = NFT_NAT_DNAT;   // NFT_NAT_DNAT or NFT_NAT_SNAT
  Family family = Family::kIpv4;  // the address family of the registers (not of the table)
  std::optional<uint32_t> addr_min{}, addr_max{}, proto_min{}, proto_max{};  // source registers
  uint32_t flags = 0;  // NF_NAT_RANGE_*; MAP_IPS/PROTO_SPECIFIED follow from the registers
};

// Builds one rule from libnftnl expressions. Each method appends one expression (the short-hands
// a few) in the order the kernel evaluates them. Expressions that `nft` prints back as a
// statement must come in the shape nft itself emits: e.g. a transport-header match needs the
// `meta l4proto` dependency first, and in an inet table an IP header match needs `meta nfproto`.
class Rule {
 public:
  Rule(Family family, std::string table, std::string chain);
  Rule(Rule&&) noexcept;
  Rule& operator=(Rule&&) noexcept;
  ~Rule();

  Rule& meta(uint32_t key, uint32_t dreg = kReg1);  // NFT_META_IIFNAME, _L4PROTO, _MARK, ...
  Rule& payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg = kReg1);
  Rule& cmp(uint32_t op, const Bytes& data, uint32_t sreg = kReg1);  // NFT_CMP_EQ, _NEQ, ...
  Rule& bitwise(const Bytes& mask, const Bytes& xor_value, uint32_t sreg = kReg1,
                uint32_t dreg = kReg1);
  // Looks up sreg in a named set/map; dreg receives the mapped data (kRegVerdict for a vmap).
  Rule& lookup(const std::string& set, uint32_t sreg = kReg1,
               std::optional<uint32_t> dreg = std::nullopt, bool invert = false);
  Rule& immediate(const Bytes& data, uint32_t dreg = kReg1);
  Rule& verdict(const Verdict& v);
  Rule& counter();
  Rule& ct(uint32_t key, uint32_t dreg = kReg1);  // NFT_CT_STATE, ...
  Rule& nat(const NatSpec& spec);
  Rule& masquerade(uint32_t flags = 0);
  Rule& fib(uint32_t flags, uint32_t result, uint32_t dreg = kReg1);
  // Stored as the CLI stores it (userdata TLV NFTNL_UDATA_RULE_COMMENT), shown by `nft list`.
  Rule& comment(const std::string& text);

  // Short-hands for the matches the plugins use.
  Rule& iifname(const std::string& name, bool equal = true);
  Rule& oifname(const std::string& name, bool equal = true);
  Rule& nfproto(uint8_t proto);  // NFPROTO_IPV4/IPV6: needed before IP matches in inet tables
  Rule& l4proto(uint8_t proto);  // IPPROTO_TCP, ...
  // `ip saddr 10.0.0.0/8` (or ip6, by the prefix's family; `!=` when not equal). Host bits of the
  // prefix's address are ignored.
  Rule& saddr(const Prefix& prefix, bool equal = true);
  Rule& daddr(const Prefix& prefix, bool equal = true);
  Rule& dport(uint8_t l4proto, uint16_t port);  // `tcp dport 80`
  Rule& ct_state(uint32_t mask);                // `ct state established,related` (NF_CT_STATE_*)
  Rule& fib_daddr_local();                      // `fib daddr type local`

  nftnl_rule* get() const { return rule_.get(); }
  Family family() const { return family_; }

 private:
  struct Deleter {
    void operator()(nftnl_rule* r) const;
  };
  Rule& addr_match(bool source, const Prefix& prefix, bool equal);
  Family family_;
  std::unique_ptr<nftnl_rule, Deleter> rule_;
};

}  // namespace cni::nft
