#pragma once
// libnftnl objects for the things tether names (internal to common/nft*): owners, and one builder
// per kind of object, so that a queued message and a read of the same object are built alike.
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/gen.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/c_ptr.h"
#include "common/nft.h"

namespace cni::nft {

using TablePtr = CPtr<nftnl_table, nftnl_table_free>;
using ChainPtr = CPtr<nftnl_chain, nftnl_chain_free>;
using SetPtr = CPtr<nftnl_set, nftnl_set_free>;
using ElemPtr = CPtr<nftnl_set_elem, nftnl_set_elem_free>;
using ExprPtr = CPtr<nftnl_expr, nftnl_expr_free>;
using RulePtr = CPtr<nftnl_rule, nftnl_rule_free>;
using GenPtr = CPtr<nftnl_gen, nftnl_gen_free>;
using UdataPtr = CPtr<nftnl_udata_buf, nftnl_udata_buf_free>;
using ElemIterPtr = CPtr<nftnl_set_elems_iter, nftnl_set_elems_iter_destroy>;

[[noreturn]] void out_of_memory();

// libnftnl's allocators return NULL only when malloc does.
template <class T>
T* non_null(T* p) {
  if (!p) out_of_memory();
  return p;
}

inline uint16_t fam(Family f) { return static_cast<uint16_t>(f); }

// "inet tether forward": how messages and errors name an object.
std::string where(Family f, const std::string& table, const std::string& obj = {});

TablePtr table_obj(Family f, const std::string& table);
// An empty chain name: every chain of the table (a dump filter).
ChainPtr chain_obj(Family f, const std::string& table, const std::string& chain);
SetPtr set_obj(Family f, const std::string& table, const std::string& set);
// A rule by handle (delete), or without one: every rule of the chain (flush, dump filter).
RulePtr rule_obj(Family f, const std::string& table, const std::string& chain,
                 std::optional<uint64_t> handle = std::nullopt);
// An element by its key (and key_end); with_value adds its data or verdict (for an add).
ElemPtr elem_obj(const Element& e, bool with_value);

}  // namespace cni::nft
