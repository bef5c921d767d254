#include "common/nft_rule.h"

#include <linux/if.h>
#include <linux/rtnetlink.h>

#include <cstring>

#include "common/error.h"
#include "common/nft_obj.h"

namespace cni::nft {
namespace {

constexpr size_t kMaxComment = 127;  // one udata TLV, NUL included, as the CLI limits it

}  // namespace

// ---- values -----------------------------------------------------------------------------------

Bytes be16(uint16_t v) { return {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)}; }

Bytes be32(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

Bytes host32(uint32_t v) {
  Bytes b(4);
  std::memcpy(b.data(), &v, 4);
  return b;
}

Bytes u8(uint8_t v) { return {v}; }

Bytes addr(const IpAddr& a) { return Bytes(a.bytes(), a.bytes() + a.byte_len()); }

Bytes ifname(const std::string& name) {
  if (name.size() >= IFNAMSIZ) {
    throw Error(kErrInternal, "interface name too long", name);
  }
  Bytes b(IFNAMSIZ, 0);
  std::memcpy(b.data(), name.data(), name.size());
  return b;
}

Bytes concat(const std::vector<Bytes>& fields) {
  Bytes out;
  for (const Bytes& f : fields) {
    out.insert(out.end(), f.begin(), f.end());
    out.resize((out.size() + 3) / 4 * 4, 0);
  }
  return out;
}

// ---- Rule ------------------------------------------------------------------------------------

void Rule::Deleter::operator()(nftnl_rule* r) const { nftnl_rule_free(r); }

Rule::Rule(Family family, std::string table, std::string chain)
    : family_(family), rule_(rule_obj(family, table, chain).release()) {}

Rule::Rule(Rule&&) noexcept = default;
Rule& Rule::operator=(Rule&&) noexcept = default;
Rule::~Rule() = default;

namespace {

ExprPtr expr(const char* name) { return ExprPtr(non_null(nftnl_expr_alloc(name))); }

void add_expr(nftnl_rule* r, ExprPtr e) { nftnl_rule_add_expr(r, e.release()); }

}  // namespace

Rule& Rule::meta(uint32_t key, uint32_t dreg) {
  ExprPtr e = expr("meta");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_DREG, dreg);
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  ExprPtr e = expr("payload");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_DREG, dreg);
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::cmp(uint32_t op, const Bytes& data, uint32_t sreg) {
  ExprPtr e = expr("cmp");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e.get(), NFTNL_EXPR_CMP_DATA, data.data(), static_cast<uint32_t>(data.size()));
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::bitwise(const Bytes& mask, const Bytes& xor_value, uint32_t sreg, uint32_t dreg) {
  if (mask.size() != xor_value.size()) {
    throw Error(kErrInternal, "nft bitwise: mask and xor differ in length");
  }
  ExprPtr e = expr("bitwise");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_SREG, sreg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_DREG, dreg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_LEN, static_cast<uint32_t>(mask.size()));
  nftnl_expr_set(e.get(), NFTNL_EXPR_BITWISE_MASK, mask.data(), static_cast<uint32_t>(mask.size()));
  nftnl_expr_set(e.get(), NFTNL_EXPR_BITWISE_XOR, xor_value.data(),
                 static_cast<uint32_t>(xor_value.size()));
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::lookup(const std::string& set, uint32_t sreg, std::optional<uint32_t> dreg,
                   bool invert) {
  ExprPtr e = expr("lookup");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SREG, sreg);
  nftnl_expr_set_str(e.get(), NFTNL_EXPR_LOOKUP_SET, set.c_str());
  if (dreg) {
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_DREG, *dreg);
  }
  if (invert) {
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
  }
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::immediate(const Bytes& data, uint32_t dreg) {
  ExprPtr e = expr("immediate");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, dreg);
  nftnl_expr_set(e.get(), NFTNL_EXPR_IMM_DATA, data.data(), static_cast<uint32_t>(data.size()));
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::verdict(const Verdict& v) {
  ExprPtr e = expr("immediate");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(v.code));
  if (v.code == NFT_JUMP || v.code == NFT_GOTO) {
    nftnl_expr_set_str(e.get(), NFTNL_EXPR_IMM_CHAIN, v.chain.c_str());
  }
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::counter() {
  add_expr(rule_.get(), expr("counter"));
  return *this;
}

Rule& Rule::ct(uint32_t key, uint32_t dreg) {
  ExprPtr e = expr("ct");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_KEY, key);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_DREG, dreg);
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::nat(const NatSpec& spec) {
  ExprPtr e = expr("nat");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_TYPE, spec.type);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_FAMILY, fam(spec.family));
  auto reg = [&](uint16_t attr, const std::optional<uint32_t>& r) {
    if (r) {
      nftnl_expr_set_u32(e.get(), attr, *r);
    }
  };
  reg(NFTNL_EXPR_NAT_REG_ADDR_MIN, spec.addr_min);
  reg(NFTNL_EXPR_NAT_REG_ADDR_MAX, spec.addr_max);
  reg(NFTNL_EXPR_NAT_REG_PROTO_MIN, spec.proto_min);
  reg(NFTNL_EXPR_NAT_REG_PROTO_MAX, spec.proto_max);
  if (spec.flags != 0) {
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_FLAGS, spec.flags);
  }
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::masquerade(uint32_t flags) {
  ExprPtr e = expr("masq");
  if (flags != 0) {
    nftnl_expr_set_u32(e.get(), NFTNL_EXPR_MASQ_FLAGS, flags);
  }
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::fib(uint32_t flags, uint32_t result, uint32_t dreg) {
  ExprPtr e = expr("fib");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_FIB_FLAGS, flags);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_FIB_RESULT, result);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_FIB_DREG, dreg);
  add_expr(rule_.get(), std::move(e));
  return *this;
}

Rule& Rule::comment(const std::string& text) {
  if (text.size() > kMaxComment) {
    throw Error(kErrInternal, "nft rule comment too long", text);
  }
  UdataPtr buf(non_null(nftnl_udata_buf_alloc(2 + kMaxComment + 1)));
  nftnl_udata_put_strz(buf.get(), NFTNL_UDATA_RULE_COMMENT, text.c_str());
  nftnl_rule_set_data(rule_.get(), NFTNL_RULE_USERDATA, nftnl_udata_buf_data(buf.get()),
                      nftnl_udata_buf_len(buf.get()));
  return *this;
}

Rule& Rule::iifname(const std::string& name, bool equal) {
  return meta(NFT_META_IIFNAME).cmp(equal ? NFT_CMP_EQ : NFT_CMP_NEQ, cni::nft::ifname(name));
}

Rule& Rule::oifname(const std::string& name, bool equal) {
  return meta(NFT_META_OIFNAME).cmp(equal ? NFT_CMP_EQ : NFT_CMP_NEQ, cni::nft::ifname(name));
}

Rule& Rule::nfproto(uint8_t proto) { return meta(NFT_META_NFPROTO).cmp(NFT_CMP_EQ, u8(proto)); }

Rule& Rule::l4proto(uint8_t proto) { return meta(NFT_META_L4PROTO).cmp(NFT_CMP_EQ, u8(proto)); }

Rule& Rule::addr_match(bool source, const Prefix& prefix, bool equal) {
  const bool v4 = prefix.addr().is_v4();
  const Prefix net = prefix.network();
  const uint32_t offset = v4 ? (source ? 12 : 16) : (source ? 8 : 24);
  payload(NFT_PAYLOAD_NETWORK_HEADER, offset, static_cast<uint32_t>(prefix.addr().byte_len()));
  if (prefix.len() < prefix.addr().bits()) {
    const IpAddr ones = Prefix(net.addr(), 0).last();  // every bit set
    const Bytes mask = addr(mask_addr(ones, prefix.len()));
    bitwise(mask, Bytes(mask.size(), 0));
  }
  return cmp(equal ? NFT_CMP_EQ : NFT_CMP_NEQ, addr(net.addr()));
}

Rule& Rule::saddr(const Prefix& prefix, bool equal) { return addr_match(true, prefix, equal); }

Rule& Rule::daddr(const Prefix& prefix, bool equal) { return addr_match(false, prefix, equal); }

Rule& Rule::dport(uint8_t proto, uint16_t port) {
  return l4proto(proto).payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2).cmp(NFT_CMP_EQ, be16(port));
}

Rule& Rule::ct_state(uint32_t mask) {
  return ct(NFT_CT_STATE).bitwise(host32(mask), host32(0)).cmp(NFT_CMP_NEQ, host32(0));
}

Rule& Rule::fib_daddr_local() {
  return fib(NFTA_FIB_F_DADDR, NFT_FIB_RESULT_ADDRTYPE).cmp(NFT_CMP_EQ, host32(RTN_LOCAL));
}

}  // namespace cni::nft
