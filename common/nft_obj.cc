#include "common/nft_obj.h"

#include "common/error.h"

namespace cni::nft {
namespace {

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

void set_bytes(nftnl_set_elem* e, uint16_t attr, const Bytes& b) {
  nftnl_set_elem_set(e, attr, b.data(), static_cast<uint32_t>(b.size()));
}

}  // namespace

void out_of_memory() { throw Error(kErrInternal, "out of memory in libnftnl"); }

std::string where(Family f, const std::string& table, const std::string& obj) {
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

RulePtr rule_obj(Family f, const std::string& table, const std::string& chain,
                 std::optional<uint64_t> handle) {
  RulePtr r(non_null(nftnl_rule_alloc()));
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, fam(f));
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  if (handle) {
    nftnl_rule_set_u64(r.get(), NFTNL_RULE_HANDLE, *handle);
  }
  return r;
}

ElemPtr elem_obj(const Element& el, bool with_value) {
  ElemPtr e(non_null(nftnl_set_elem_alloc()));
  set_bytes(e.get(), NFTNL_SET_ELEM_KEY, el.key);
  if (!el.key_end.empty()) {
    set_bytes(e.get(), NFTNL_SET_ELEM_KEY_END, el.key_end);
  }
  if (with_value && !el.data.empty()) {
    set_bytes(e.get(), NFTNL_SET_ELEM_DATA, el.data);
  }
  if (with_value && el.verdict) {
    nftnl_set_elem_set_u32(e.get(), NFTNL_SET_ELEM_VERDICT,
                           static_cast<uint32_t>(el.verdict->code));
    if (!el.verdict->chain.empty()) {
      nftnl_set_elem_set_str(e.get(), NFTNL_SET_ELEM_CHAIN, el.verdict->chain.c_str());
    }
  }
  return e;
}

}  // namespace cni::nft
