#include "common/nft.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/gen.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/if.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <thread>

#include "common/c_ptr.h"
#include "common/error.h"

namespace cni::nft {
namespace {

// A batch page holds several messages; one message may spill into the overrun area, so both
// bound the size of a single message (a rule, or one chunk of set elements).
constexpr uint32_t kBatchPage = 32 * 1024;
constexpr uint32_t kBatchOverrun = 32 * 1024;
constexpr size_t kElementsPerMsg = 64;
constexpr size_t kRecvSize = 64 * 1024;  // larger than any dump skb the kernel builds
constexpr size_t kMaxComment = 127;      // one udata TLV, NUL included, as the CLI limits it

using TablePtr = CPtr<nftnl_table, nftnl_table_free>;
using ChainPtr = CPtr<nftnl_chain, nftnl_chain_free>;
using SetPtr = CPtr<nftnl_set, nftnl_set_free>;
using ElemPtr = CPtr<nftnl_set_elem, nftnl_set_elem_free>;
using ExprPtr = CPtr<nftnl_expr, nftnl_expr_free>;
using RulePtr = CPtr<nftnl_rule, nftnl_rule_free>;
using GenPtr = CPtr<nftnl_gen, nftnl_gen_free>;
using UdataPtr = CPtr<nftnl_udata_buf, nftnl_udata_buf_free>;
using ElemIterPtr = CPtr<nftnl_set_elems_iter, nftnl_set_elems_iter_destroy>;

template <class T>
T non_null(T p) {
  if (!p) {
    throw Error(kErrInternal, "out of memory in libnftnl");
  }
  return p;
}

uint16_t fam(Family f) { return static_cast<uint16_t>(f); }

const char* family_name(Family f) {
  switch (f) {
    case Family::kInet:
      return "inet";
    case Family::kIpv4:
      return "ip";
    case Family::kIpv6:
      return "ip6";
    case Family::kBridge:
      return "bridge";
  }
  return "?";
}

std::string where(Family f, const std::string& table, const std::string& obj = {}) {
  std::string s = std::string(family_name(f)) + " " + table;
  return obj.empty() ? s : s + " " + obj;
}

TablePtr table_obj(Family f, const std::string& table) {
  TablePtr t(non_null(nftnl_table_alloc()));
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, fam(f));
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
  return t;
}

ChainPtr chain_obj(Family f, const std::string& table, const std::string& chain) {
  ChainPtr c(non_null(nftnl_chain_alloc()));
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, fam(f));
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
  if (!chain.empty()) {
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, chain.c_str());
  }
  return c;
}

SetPtr set_obj(Family f, const std::string& table, const std::string& set) {
  SetPtr s(non_null(nftnl_set_alloc()));
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, fam(f));
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.c_str());
  return s;
}

// nftables packs a concatenation's datatype ids 6 bits each, first field most significant.
uint32_t packed_type(const std::vector<DataType>& fields) {
  uint32_t type = 0;
  for (const DataType& t : fields) {
    type = (type << 6) | t.id;
  }
  return type;
}

uint32_t packed_len(const std::vector<DataType>& fields) {
  if (fields.size() == 1) {
    return fields[0].len;
  }
  uint32_t len = 0;
  for (const DataType& t : fields) {
    len += (t.len + 3) / 4 * 4;
  }
  return len;
}

// A concatenation has no single byte order; nft itself stores 0 ("invalid") for it.
uint32_t packed_byteorder(const std::vector<DataType>& fields) {
  return fields.size() == 1 ? fields[0].byteorder : 0;
}

std::string errno_text(int err) { return std::strerror(err); }

// The reads' one rule for a netlink answer: ENOENT means "not there" (false); any other error
// is an Error with `what`; success is true.
bool answered(int err, const std::string& what) {
  if (err == -ENOENT) return false;
  if (err < 0) throw Error(kErrInternal, what, errno_text(-err));
  return true;
}

// Collects the C callback's exception so it can be rethrown outside libmnl's frames.
template <class Cb>
struct CbCtx {
  Cb* cb;
  std::exception_ptr error;
};

template <class Cb>
int trampoline(const nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<CbCtx<Cb>*>(data);
  try {
    return (*ctx->cb)(nlh);
  } catch (...) {
    ctx->error = std::current_exception();
    return MNL_CB_ERROR;
  }
}

std::string rule_comment(const nftnl_rule* r) {
  uint32_t len = 0;
  auto* p = static_cast<const uint8_t*>(nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len));
  // TLVs: type (u8), length (u8), value; the comment is NUL terminated.
  for (uint32_t i = 0; p != nullptr && i + 2 <= len;) {
    uint8_t type = p[i];
    uint8_t l = p[i + 1];
    if (i + 2 + l > len) {
      break;
    }
    if (type == NFTNL_UDATA_RULE_COMMENT && l > 0) {
      return std::string(reinterpret_cast<const char*>(p + i + 2),
                         strnlen(reinterpret_cast<const char*>(p + i + 2), l));
    }
    i += 2 + l;
  }
  return {};
}

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

Bytes ipv4(const std::string& addr) {
  Bytes b(4);
  if (inet_pton(AF_INET, addr.c_str(), b.data()) != 1) {
    throw Error(kErrInternal, "invalid IPv4 address", addr);
  }
  return b;
}

Bytes ipv6(const std::string& addr) {
  Bytes b(16);
  if (inet_pton(AF_INET6, addr.c_str(), b.data()) != 1) {
    throw Error(kErrInternal, "invalid IPv6 address", addr);
  }
  return b;
}

Bytes ip(const std::string& addr) {
  return addr.find(':') == std::string::npos ? ipv4(addr) : ipv6(addr);
}

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
    : family_(family), rule_(non_null(nftnl_rule_alloc())) {
  nftnl_rule_set_u32(rule_.get(), NFTNL_RULE_FAMILY, fam(family));
  nftnl_rule_set_str(rule_.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(rule_.get(), NFTNL_RULE_CHAIN, chain.c_str());
}

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

Rule& Rule::addr_match(bool source, const Bytes& addr, int prefix_len, bool equal) {
  const bool v4 = addr.size() == 4;
  if (!v4 && addr.size() != 16) {
    throw Error(kErrInternal, "nft address match: not an IPv4 or IPv6 address");
  }
  const int bits = v4 ? 32 : 128;
  if (prefix_len < 0 || prefix_len > bits) {
    throw Error(kErrInternal, "nft address match: bad prefix length " + std::to_string(prefix_len));
  }
  const uint32_t offset = v4 ? (source ? 12 : 16) : (source ? 8 : 24);
  payload(NFT_PAYLOAD_NETWORK_HEADER, offset, static_cast<uint32_t>(addr.size()));
  Bytes value = addr;
  if (prefix_len < bits) {
    Bytes mask(addr.size(), 0);
    for (int i = 0; i < prefix_len; ++i) {
      mask[static_cast<size_t>(i / 8)] |= static_cast<uint8_t>(0x80 >> (i % 8));
    }
    for (size_t i = 0; i < value.size(); ++i) {
      value[i] &= mask[i];
    }
    bitwise(mask, Bytes(addr.size(), 0));
  }
  return cmp(equal ? NFT_CMP_EQ : NFT_CMP_NEQ, value);
}

Rule& Rule::saddr(const Bytes& addr, int prefix_len, bool equal) {
  return addr_match(true, addr, prefix_len, equal);
}

Rule& Rule::daddr(const Bytes& addr, int prefix_len, bool equal) {
  return addr_match(false, addr, prefix_len, equal);
}

Rule& Rule::dport(uint8_t proto, uint16_t port) {
  return l4proto(proto).payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2).cmp(NFT_CMP_EQ, be16(port));
}

Rule& Rule::ct_state(uint32_t mask) {
  return ct(NFT_CT_STATE).bitwise(host32(mask), host32(0)).cmp(NFT_CMP_NEQ, host32(0));
}

Rule& Rule::fib_daddr_local() {
  return fib(NFTA_FIB_F_DADDR, NFT_FIB_RESULT_ADDRTYPE).cmp(NFT_CMP_EQ, host32(RTN_LOCAL));
}

// ---- NftTransaction --------------------------------------------------------------------------

void NftTransaction::SockDeleter::operator()(mnl_socket* s) const { mnl_socket_close(s); }
void NftTransaction::BatchDeleter::operator()(nftnl_batch* b) const { nftnl_batch_free(b); }

NftTransaction::NftTransaction(NftTransaction&&) noexcept = default;
NftTransaction& NftTransaction::operator=(NftTransaction&&) noexcept = default;
NftTransaction::~NftTransaction() = default;

NftTransaction NftTransaction::open() {
  NftTransaction tx;
  tx.sock_.reset(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
  if (!tx.sock_) {
    throw_errno("cannot open a nfnetlink socket");
  }
  if (mnl_socket_bind(tx.sock_.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    throw_errno("cannot bind the nfnetlink socket");
  }
  tx.portid_ = mnl_socket_get_portid(tx.sock_.get());
  // Extended ACKs carry the kernel's reason; capped ACKs do not echo our messages back, which
  // keeps the receive buffer small for large batches.
  int one = 1;
  mnl_socket_setsockopt(tx.sock_.get(), NETLINK_EXT_ACK, &one, sizeof one);
  mnl_socket_setsockopt(tx.sock_.get(), NETLINK_CAP_ACK, &one, sizeof one);
  tx.seq_ = static_cast<uint32_t>(time(nullptr));

  char buf[MNL_SOCKET_BUFFER_SIZE];
  nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, ++tx.seq_);
  bool got = false;
  int err = tx.talk(buf, [&](const nlmsghdr* nlh) {
    GenPtr gen(non_null(nftnl_gen_alloc()));
    if (nftnl_gen_nlmsg_parse(nlh, gen.get()) == 0) {
      tx.genid_ = nftnl_gen_get_u32(gen.get(), NFTNL_GEN_ID);
      got = true;
    }
    return MNL_CB_OK;
  });
  if (err < 0 || !got) {
    throw Error(kErrInternal, "cannot read the nftables generation id",
                err < 0 ? errno_text(-err) : "no reply");
  }
  return tx;
}

template <class Cb>
int NftTransaction::talk(char* buf, Cb&& cb) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf);
  const uint32_t seq = nlh->nlmsg_seq;
  if (mnl_socket_sendto(sock_.get(), nlh, nlh->nlmsg_len) < 0) {
    throw_errno("cannot send a nfnetlink request");
  }
  using CbT = std::remove_reference_t<Cb>;
  CbCtx<CbT> ctx{&cb, nullptr};
  std::vector<char> rbuf(kRecvSize);
  int ret = 0;
  bool interrupted = false;
  do {
    ssize_t n = mnl_socket_recvfrom(sock_.get(), rbuf.data(), rbuf.size());
    if (n < 0) {
      return -errno;
    }
    ret = mnl_cb_run(rbuf.data(), static_cast<size_t>(n), seq, portid_, trampoline<CbT>, &ctx);
    if (ret < 0 && errno == EINTR) {
      // The dump was interrupted by a concurrent change; read it to its end (NLMSG_DONE), then
      // report EINTR so that the caller reads again.
      interrupted = true;
      const auto* m = reinterpret_cast<const nlmsghdr*>(rbuf.data());
      int left = static_cast<int>(n);
      ret = 1;
      for (; mnl_nlmsg_ok(m, left); m = mnl_nlmsg_next(m, &left)) {
        if (m->nlmsg_type == NLMSG_DONE || m->nlmsg_type == NLMSG_ERROR) {
          ret = 0;
        }
      }
    }
  } while (ret > 0);
  if (ctx.error) {
    std::rethrow_exception(ctx.error);
  }
  if (interrupted) {
    return -EINTR;
  }
  return ret < 0 ? -errno : 0;
}

char* NftTransaction::next_msg(const std::string& description) {
  if (spent_) {
    throw Error(kErrInternal, "nftables transaction reused after commit");
  }
  if (!batch_) {
    batch_.reset(non_null(nftnl_batch_alloc(kBatchPage, kBatchOverrun)));
    // The generation id in the batch begin turns a concurrent change into ERESTART.
    nlmsghdr* begin =
        nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(batch_.get())), ++seq_);
    mnl_attr_put_u32(begin, NFNL_BATCH_GENID, htonl(genid_));
    msg_done();
    first_seq_ = seq_ + 1;
  }
  descriptions_.push_back(description);
  ++seq_;
  return static_cast<char*>(nftnl_batch_buffer(batch_.get()));
}

void NftTransaction::msg_done() {
  if (nftnl_batch_update(batch_.get()) < 0) {
    throw Error(kErrInternal, "out of memory building the nftables batch");
  }
}

void NftTransaction::add_table(Family family, const std::string& table) {
  char* buf = next_msg("add table " + where(family, table));
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWTABLE, fam(family), NLM_F_CREATE | NLM_F_ACK, seq_);
  nftnl_table_nlmsg_build_payload(nlh, table_obj(family, table).get());
  msg_done();
}

void NftTransaction::delete_table(Family family, const std::string& table) {
  char* buf = next_msg("delete table " + where(family, table));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_DELTABLE, fam(family), NLM_F_ACK, seq_);
  nftnl_table_nlmsg_build_payload(nlh, table_obj(family, table).get());
  msg_done();
}

void NftTransaction::add_chain(Family family, const std::string& table, const ChainSpec& spec) {
  ChainPtr c = chain_obj(family, table, spec.name);
  if (spec.hook) {
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, spec.hook->hooknum);
    nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, spec.hook->priority);
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, spec.hook->type.c_str());
    if (spec.hook->policy) {
      nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, *spec.hook->policy);
    }
  }
  char* buf = next_msg("add chain " + where(family, table, spec.name));
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWCHAIN, fam(family), NLM_F_CREATE | NLM_F_ACK, seq_);
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
  msg_done();
}

void NftTransaction::delete_chain(Family family, const std::string& table,
                                  const std::string& chain) {
  char* buf = next_msg("delete chain " + where(family, table, chain));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_DELCHAIN, fam(family), NLM_F_ACK, seq_);
  nftnl_chain_nlmsg_build_payload(nlh, chain_obj(family, table, chain).get());
  msg_done();
}

void NftTransaction::flush_chain(Family family, const std::string& table,
                                 const std::string& chain) {
  // DELRULE without a handle removes every rule of the chain.
  RulePtr r(non_null(nftnl_rule_alloc()));
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, fam(family));
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  char* buf = next_msg("flush chain " + where(family, table, chain));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_DELRULE, fam(family), NLM_F_ACK, seq_);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  msg_done();
}

void NftTransaction::add_set(Family family, const std::string& table, const SetSpec& spec) {
  if (spec.key.empty() || (spec.verdict_map && !spec.data.empty())) {
    throw Error(kErrInternal, "invalid nftables set definition", spec.name);
  }
  SetPtr s = set_obj(family, table, spec.name);
  const bool map = spec.verdict_map || !spec.data.empty();
  // An interval set with a concatenated key needs the length of each field (NFTA_SET_DESC_CONCAT)
  // and NFT_SET_CONCAT; the kernel then picks its pipapo backend, which matches per field.
  const bool concat_interval = (spec.flags & NFT_SET_INTERVAL) != 0 && spec.key.size() > 1;
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS,
                    spec.flags | (map ? NFT_SET_MAP : 0) | (concat_interval ? NFT_SET_CONCAT : 0));
  if (concat_interval) {
    uint8_t field_len[NFT_REG32_COUNT] = {};
    if (spec.key.size() > NFT_REG32_COUNT) {
      throw Error(kErrInternal, "invalid nftables set definition", spec.name + ": too many fields");
    }
    for (size_t i = 0; i < spec.key.size(); ++i) {
      field_len[i] = static_cast<uint8_t>(spec.key[i].len);
    }
    nftnl_set_set_data(s.get(), NFTNL_SET_DESC_CONCAT, field_len,
                       static_cast<uint32_t>(spec.key.size()));
  }
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, packed_type(spec.key));
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, packed_len(spec.key));
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, ++set_id_);
  if (spec.verdict_map) {
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
  } else if (map) {
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, packed_type(spec.data));
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, packed_len(spec.data));
  }
  // The byte orders are what `nft list` needs besides the type ids (nftables src/mnl.c).
  UdataPtr ud(non_null(nftnl_udata_buf_alloc(64)));
  nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_KEYBYTEORDER, packed_byteorder(spec.key));
  if (map) {
    nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_DATABYTEORDER,
                        spec.verdict_map ? 0 : packed_byteorder(spec.data));
  }
  nftnl_set_set_data(s.get(), NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud.get()),
                     nftnl_udata_buf_len(ud.get()));
  char* buf = next_msg("add set " + where(family, table, spec.name));
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWSET, fam(family), NLM_F_CREATE | NLM_F_ACK, seq_);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  msg_done();
}

void NftTransaction::delete_set(Family family, const std::string& table, const std::string& set) {
  char* buf = next_msg("delete set " + where(family, table, set));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_DELSET, fam(family), NLM_F_ACK, seq_);
  nftnl_set_nlmsg_build_payload(nlh, set_obj(family, table, set).get());
  msg_done();
}

void NftTransaction::elements_msg(uint16_t type, Family family, const std::string& table,
                                  const std::string& set, const std::vector<Element>& elements) {
  const char* verb = type == NFT_MSG_NEWSETELEM ? "add element to " : "delete element from ";
  // Chunks keep every message within one batch page plus its overrun.
  for (size_t start = 0; start < elements.size(); start += kElementsPerMsg) {
    SetPtr s = set_obj(family, table, set);
    size_t end = std::min(elements.size(), start + kElementsPerMsg);
    for (size_t i = start; i < end; ++i) {
      const Element& el = elements[i];
      ElemPtr e(non_null(nftnl_set_elem_alloc()));
      nftnl_set_elem_set(e.get(), NFTNL_SET_ELEM_KEY, el.key.data(),
                         static_cast<uint32_t>(el.key.size()));
      if (!el.key_end.empty()) {
        nftnl_set_elem_set(e.get(), NFTNL_SET_ELEM_KEY_END, el.key_end.data(),
                           static_cast<uint32_t>(el.key_end.size()));
      }
      if (type == NFT_MSG_NEWSETELEM && !el.data.empty()) {
        nftnl_set_elem_set(e.get(), NFTNL_SET_ELEM_DATA, el.data.data(),
                           static_cast<uint32_t>(el.data.size()));
      }
      if (type == NFT_MSG_NEWSETELEM && el.verdict) {
        nftnl_set_elem_set_u32(e.get(), NFTNL_SET_ELEM_VERDICT,
                               static_cast<uint32_t>(el.verdict->code));
        if (!el.verdict->chain.empty()) {
          nftnl_set_elem_set_str(e.get(), NFTNL_SET_ELEM_CHAIN, el.verdict->chain.c_str());
        }
      }
      nftnl_set_elem_add(s.get(), e.release());
    }
    char* buf = next_msg(verb + where(family, table, set) + " (" + std::to_string(end - start) +
                         " elements)");
    uint16_t flags = NLM_F_ACK | (type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, type, fam(family), flags, seq_);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    msg_done();
  }
}

void NftTransaction::add_elements(Family family, const std::string& table, const std::string& set,
                                  const std::vector<Element>& elements) {
  elements_msg(NFT_MSG_NEWSETELEM, family, table, set, elements);
}

void NftTransaction::delete_elements(Family family, const std::string& table,
                                     const std::string& set, const std::vector<Element>& elements) {
  elements_msg(NFT_MSG_DELSETELEM, family, table, set, elements);
}

void NftTransaction::add_rule(const Rule& rule) {
  const char* table = nftnl_rule_get_str(rule.get(), NFTNL_RULE_TABLE);
  const char* chain = nftnl_rule_get_str(rule.get(), NFTNL_RULE_CHAIN);
  char* buf = next_msg("add rule " + where(rule.family(), table, chain));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWRULE, fam(rule.family()),
                                        NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, seq_);
  nftnl_rule_nlmsg_build_payload(nlh, rule.get());
  msg_done();
}

void NftTransaction::delete_rule(Family family, const std::string& table, const std::string& chain,
                                 uint64_t handle) {
  RulePtr r(non_null(nftnl_rule_alloc()));
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, fam(family));
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_set_u64(r.get(), NFTNL_RULE_HANDLE, handle);
  char* buf =
      next_msg("delete rule " + where(family, table, chain) + " handle " + std::to_string(handle));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_DELRULE, fam(family), NLM_F_ACK, seq_);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  msg_done();
}

namespace {

struct AckError {
  uint32_t seq;
  int error;  // positive errno
  std::string text;
};

// Reads an NLMSG_ERROR: error 0 is an ACK. With NETLINK_CAP_ACK the TLVs follow the header.
AckError parse_ack(const nlmsghdr* nlh) {
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  AckError out{nlh->nlmsg_seq, -err->error, {}};
  if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) == 0) {
    return out;
  }
  size_t off = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if ((nlh->nlmsg_flags & NLM_F_CAPPED) == 0) {
    off += err->msg.nlmsg_len - NLMSG_HDRLEN;
  }
  off = NLMSG_ALIGN(off);
  if (off >= nlh->nlmsg_len) {
    return out;
  }
  const char* end = reinterpret_cast<const char*>(nlh) + nlh->nlmsg_len;
  const char* p = reinterpret_cast<const char*>(nlh) + off;
  while (mnl_attr_ok(reinterpret_cast<const nlattr*>(p), static_cast<int>(end - p))) {
    const auto* attr = reinterpret_cast<const nlattr*>(p);
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG) {
      out.text = mnl_attr_get_str(attr);
    }
    p = reinterpret_cast<const char*>(mnl_attr_next(attr));
  }
  return out;
}

void grow_buffer(int fd, int opt_force, int opt, size_t want) {
  int current = 0;
  socklen_t len = sizeof current;
  int level_opt = opt_force == SO_SNDBUFFORCE ? SO_SNDBUF : SO_RCVBUF;
  if (getsockopt(fd, SOL_SOCKET, level_opt, &current, &len) == 0 &&
      static_cast<size_t>(current) >= want) {
    return;
  }
  int v = static_cast<int>(want);
  if (setsockopt(fd, SOL_SOCKET, opt_force, &v, sizeof v) != 0) {
    setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);  // unprivileged: capped by wmem/rmem_max
  }
}

}  // namespace

void NftTransaction::commit() {
  if (spent_) {
    throw Error(kErrInternal, "nftables transaction committed twice");
  }
  spent_ = true;
  if (!batch_) {
    return;  // nothing queued
  }
  const uint32_t last_seq = seq_;
  nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(batch_.get())), ++seq_);
  msg_done();

  const int fd = mnl_socket_get_fd(sock_.get());
  std::vector<iovec> iov(static_cast<size_t>(nftnl_batch_iovec_len(batch_.get())));
  nftnl_batch_iovec(batch_.get(), iov.data(), static_cast<uint32_t>(iov.size()));
  size_t total = 0;
  for (const iovec& v : iov) {
    total += v.iov_len;
  }
  // The kernel takes the batch as one datagram and queues one ACK per message before sendmsg
  // returns; make room for both.
  grow_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, total + 4096);
  grow_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, descriptions_.size() * 1024 + 65536);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof kernel;
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  if (sendmsg(fd, &msg, 0) < 0) {
    throw_errno("cannot send the nftables batch");
  }

  // Drain every ACK: the batch was processed synchronously, so all of them are queued now.
  std::vector<AckError> errors;
  bool last_acked = false;
  bool lost = false;
  std::vector<char> rbuf(kRecvSize);
  for (;;) {
    ssize_t n = recv(fd, rbuf.data(), rbuf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == ENOBUFS) {
        lost = true;
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      throw_errno("cannot read nftables acknowledgements");
    }
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(rbuf.data());
    int left = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
      if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_pid != portid_) {
        continue;
      }
      AckError ack = parse_ack(nlh);
      if (ack.seq == last_seq) {
        last_acked = true;
      }
      if (ack.error != 0) {
        errors.push_back(std::move(ack));
      }
    }
  }
  batch_.reset();

  for (const AckError& e : errors) {
    if (e.error == ERESTART) {
      throw Error(kErrTryAgainLater, "the nftables ruleset changed concurrently",
                  "generation " + std::to_string(genid_) + " is stale");
    }
  }
  if (!errors.empty()) {
    std::string details;
    for (const AckError& e : errors) {
      std::string what = "batch";
      if (e.seq >= first_seq_ && e.seq - first_seq_ < descriptions_.size()) {
        what = descriptions_[e.seq - first_seq_];
      }
      if (!details.empty()) {
        details += "; ";
      }
      details += what + ": " + errno_text(e.error);
      if (!e.text.empty()) {
        details += " (" + e.text + ")";
      }
    }
    throw Error(kErrInternal, "nftables transaction failed", details);
  }
  if (lost || !last_acked) {
    throw Error(kErrInternal, "nftables transaction: acknowledgements lost",
                "the outcome of " + std::to_string(descriptions_.size()) + " messages is unknown");
  }
}

bool NftTransaction::table_exists(Family family, const std::string& table) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, fam(family), NLM_F_ACK, ++seq_);
  nftnl_table_nlmsg_build_payload(nlh, table_obj(family, table).get());
  int err = talk(buf, [](const nlmsghdr*) { return MNL_CB_OK; });
  if (!answered(err, "cannot read nftables table " + where(family, table))) return false;
  return true;
}

namespace {

// Repeats a read whose dump a concurrent change interrupted (EINTR).
template <class F>
int with_dump_retry(F&& f) {
  int err = 0;
  for (int i = 0; i < 5; ++i) {
    err = f();
    if (err != -EINTR) {
      break;
    }
  }
  return err;
}

}  // namespace

std::optional<std::vector<ChainInfo>> NftTransaction::list_chains(Family family,
                                                                  const std::string& table) {
  if (!table_exists(family, table)) {
    return std::nullopt;
  }
  std::vector<ChainInfo> out;
  int err = with_dump_retry([&] {
    out.clear();
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, fam(family), NLM_F_DUMP, ++seq_);
    nftnl_chain_nlmsg_build_payload(nlh, chain_obj(family, table, {}).get());
    return talk(buf, [&](const nlmsghdr* m) {
      ChainPtr c(non_null(nftnl_chain_alloc()));
      if (nftnl_chain_nlmsg_parse(m, c.get()) < 0 ||
          table != nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)) {
        return MNL_CB_OK;
      }
      ChainInfo info;
      info.name = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME);
      info.handle = nftnl_chain_get_u64(c.get(), NFTNL_CHAIN_HANDLE);
      if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_HOOKNUM)) {
        Hook hook{nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM),
                  nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO),
                  nftnl_chain_is_set(c.get(), NFTNL_CHAIN_TYPE)
                      ? nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TYPE)
                      : "",
                  std::nullopt};
        if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_POLICY)) {
          hook.policy = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY);
        }
        info.hook = std::move(hook);
      }
      out.push_back(std::move(info));
      return MNL_CB_OK;
    });
  });
  if (err < 0) {
    throw Error(kErrInternal, "cannot list chains of " + where(family, table), errno_text(-err));
  }
  return out;
}

namespace {

// Appends the elements of one NEWSETELEM message (a dump part or a GETSETELEM answer) to `out`.
void parse_elements(const nlmsghdr* m, std::vector<Element>& out) {
  SetPtr s(non_null(nftnl_set_alloc()));
  if (nftnl_set_elems_nlmsg_parse(m, s.get()) < 0) {
    return;
  }
  ElemIterPtr it(non_null(nftnl_set_elems_iter_create(s.get())));
  auto bytes = [](nftnl_set_elem* e, uint16_t attr) {
    uint32_t len = 0;
    auto* p = static_cast<const uint8_t*>(nftnl_set_elem_get(e, attr, &len));
    return p ? Bytes(p, p + len) : Bytes{};
  };
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it.get()); e != nullptr;
       e = nftnl_set_elems_iter_next(it.get())) {
    Element el;
    el.key = bytes(e, NFTNL_SET_ELEM_KEY);
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_KEY_END)) {
      el.key_end = bytes(e, NFTNL_SET_ELEM_KEY_END);
    }
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_DATA)) {
      el.data = bytes(e, NFTNL_SET_ELEM_DATA);
    }
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT)) {
      Verdict v{static_cast<int>(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT)), {}};
      if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN)) {
        v.chain = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN);
      }
      el.verdict = std::move(v);
    }
    out.push_back(std::move(el));
  }
}

}  // namespace

std::optional<std::vector<Element>> NftTransaction::list_elements(Family family,
                                                                  const std::string& table,
                                                                  const std::string& set) {
  std::vector<Element> out;
  int err = with_dump_retry([&] {
    out.clear();
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, fam(family), NLM_F_DUMP, ++seq_);
    nftnl_set_elems_nlmsg_build_payload(nlh, set_obj(family, table, set).get());
    return talk(buf, [&](const nlmsghdr* m) {
      parse_elements(m, out);
      return MNL_CB_OK;
    });
  });
  if (!answered(err, "cannot list elements of " + where(family, table, set))) return std::nullopt;
  return out;
}

std::optional<Element> NftTransaction::get_element(Family family, const std::string& table,
                                                   const std::string& set, const Element& probe) {
  SetPtr s = set_obj(family, table, set);
  ElemPtr e(non_null(nftnl_set_elem_alloc()));
  nftnl_set_elem_set(e.get(), NFTNL_SET_ELEM_KEY, probe.key.data(),
                     static_cast<uint32_t>(probe.key.size()));
  if (!probe.key_end.empty()) {
    nftnl_set_elem_set(e.get(), NFTNL_SET_ELEM_KEY_END, probe.key_end.data(),
                       static_cast<uint32_t>(probe.key_end.size()));
  }
  nftnl_set_elem_add(s.get(), e.release());
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, fam(family), NLM_F_ACK, ++seq_);
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  std::vector<Element> found;
  int err = talk(buf, [&](const nlmsghdr* m) {
    parse_elements(m, found);
    return MNL_CB_OK;
  });
  if (!answered(err, "cannot read an element of " + where(family, table, set))) return std::nullopt;
  if (found.empty()) {
    return std::nullopt;
  }
  return std::move(found.front());
}

std::optional<std::vector<RuleInfo>> NftTransaction::list_rules(Family family,
                                                                const std::string& table,
                                                                const std::string& chain) {
  // A rule dump filtered on a missing chain is just empty: ask for the chain itself first.
  {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, fam(family), NLM_F_ACK, ++seq_);
    nftnl_chain_nlmsg_build_payload(nlh, chain_obj(family, table, chain).get());
    int err = talk(buf, [](const nlmsghdr*) { return MNL_CB_OK; });
    if (!answered(err, "cannot read chain " + where(family, table, chain))) return std::nullopt;
  }
  std::vector<RuleInfo> out;
  int err = with_dump_retry([&] {
    out.clear();
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, fam(family), NLM_F_DUMP, ++seq_);
    RulePtr filter(non_null(nftnl_rule_alloc()));
    nftnl_rule_set_str(filter.get(), NFTNL_RULE_TABLE, table.c_str());
    nftnl_rule_set_str(filter.get(), NFTNL_RULE_CHAIN, chain.c_str());
    nftnl_rule_nlmsg_build_payload(nlh, filter.get());
    return talk(buf, [&](const nlmsghdr* m) {
      RulePtr r(non_null(nftnl_rule_alloc()));
      if (nftnl_rule_nlmsg_parse(m, r.get()) < 0 ||
          table != nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE) ||
          chain != nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN)) {
        return MNL_CB_OK;
      }
      out.push_back({chain, nftnl_rule_get_u64(r.get(), NFTNL_RULE_HANDLE), rule_comment(r.get())});
      return MNL_CB_OK;
    });
  });
  if (!answered(err, "cannot list rules of " + where(family, table, chain))) return std::nullopt;
  return out;
}

void run(const std::function<void(NftTransaction&)>& build, int attempts) {
  for (int attempt = 1;; ++attempt) {
    NftTransaction tx = NftTransaction::open();
    build(tx);
    try {
      tx.commit();
      return;
    } catch (const Error& e) {
      if (e.code() != kErrTryAgainLater || attempt >= attempts) {
        throw;
      }
    }
    // Someone else is committing; step aside briefly so that parallel ADDs do not collide again.
    std::this_thread::sleep_for(std::chrono::microseconds(500 * attempt));
  }
}

}  // namespace cni::nft
