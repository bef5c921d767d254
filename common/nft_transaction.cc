// NftTransaction: what a caller queues, turned into batch messages; and its commit.
// The reads are in nft_read.cc, the batch itself in nft_batch.cc.
#include <libnftnl/common.h>

#include <algorithm>

#include "common/error.h"
#include "common/mnl.h"
#include "common/nft.h"
#include "common/nft_batch.h"
#include "common/nft_obj.h"

namespace cni::nft {
namespace {

constexpr size_t kElementsPerMsg = 64;  // keeps a message within a batch page and its overrun

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

// An interval set with a concatenated key needs the length of each field (NFTA_SET_DESC_CONCAT)
// and NFT_SET_CONCAT; the kernel then picks its pipapo backend, which matches per field.
void set_concat_fields(nftnl_set* s, const SetSpec& spec) {
  uint8_t field_len[NFT_REG32_COUNT] = {};
  if (spec.key.size() > NFT_REG32_COUNT) {
    throw Error(kErrInternal, "invalid nftables set definition", spec.name + ": too many fields");
  }
  for (size_t i = 0; i < spec.key.size(); ++i) {
    field_len[i] = static_cast<uint8_t>(spec.key[i].len);
  }
  nftnl_set_set_data(s, NFTNL_SET_DESC_CONCAT, field_len, static_cast<uint32_t>(spec.key.size()));
}

// The byte orders are what `nft list` needs besides the type ids (nftables src/mnl.c).
void set_userdata(nftnl_set* s, const SetSpec& spec, bool map) {
  UdataPtr ud(non_null(nftnl_udata_buf_alloc(64)));
  nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_KEYBYTEORDER, packed_byteorder(spec.key));
  if (map) {
    nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_DATABYTEORDER,
                        spec.verdict_map ? 0 : packed_byteorder(spec.data));
  }
  nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud.get()),
                     nftnl_udata_buf_len(ud.get()));
}

}  // namespace

NftTransaction::NftTransaction(mnl::Socket& sock) : NftTransaction(nullptr, sock) {}

NftTransaction::NftTransaction(std::unique_ptr<mnl::Socket> owned, mnl::Socket& sock)
    : owned_(std::move(owned)), sock_(&sock), genid_(read_genid(sock)) {}

NftTransaction NftTransaction::open() {
  auto sock = std::make_unique<mnl::Socket>(mnl::Socket::netfilter());
  mnl::Socket& s = *sock;
  return NftTransaction(std::move(sock), s);
}

NftTransaction::NftTransaction(NftTransaction&&) noexcept = default;
NftTransaction& NftTransaction::operator=(NftTransaction&&) noexcept = default;
NftTransaction::~NftTransaction() = default;

size_t NftTransaction::size() const { return batch_ ? batch_->size() : 0; }

Batch& NftTransaction::batch() {
  if (spent_) {
    throw Error(kErrInternal, "nftables transaction reused after commit");
  }
  if (!batch_) {
    batch_ = std::make_unique<Batch>(*sock_);
  }
  return *batch_;
}

void NftTransaction::add_table(Family family, const std::string& table) {
  nlmsghdr* nlh =
      batch().put(NFT_MSG_NEWTABLE, family, NLM_F_CREATE, "add table " + where(family, table));
  nftnl_table_nlmsg_build_payload(nlh, table_obj(family, table).get());
  batch_->done();
}

void NftTransaction::delete_table(Family family, const std::string& table) {
  nlmsghdr* nlh = batch().put(NFT_MSG_DELTABLE, family, 0, "delete table " + where(family, table));
  nftnl_table_nlmsg_build_payload(nlh, table_obj(family, table).get());
  batch_->done();
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
  nlmsghdr* nlh = batch().put(NFT_MSG_NEWCHAIN, family, NLM_F_CREATE,
                              "add chain " + where(family, table, spec.name));
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
  batch_->done();
}

void NftTransaction::delete_chain(Family family, const std::string& table,
                                  const std::string& chain) {
  nlmsghdr* nlh =
      batch().put(NFT_MSG_DELCHAIN, family, 0, "delete chain " + where(family, table, chain));
  nftnl_chain_nlmsg_build_payload(nlh, chain_obj(family, table, chain).get());
  batch_->done();
}

void NftTransaction::flush_chain(Family family, const std::string& table,
                                 const std::string& chain) {
  // DELRULE without a handle removes every rule of the chain.
  nlmsghdr* nlh =
      batch().put(NFT_MSG_DELRULE, family, 0, "flush chain " + where(family, table, chain));
  nftnl_rule_nlmsg_build_payload(nlh, rule_obj(family, table, chain).get());
  batch_->done();
}

void NftTransaction::add_set(Family family, const std::string& table, const SetSpec& spec) {
  if (spec.key.empty() || (spec.verdict_map && !spec.data.empty())) {
    throw Error(kErrInternal, "invalid nftables set definition", spec.name);
  }
  SetPtr s = set_obj(family, table, spec.name);
  const bool map = spec.verdict_map || !spec.data.empty();
  const bool concat_interval = (spec.flags & NFT_SET_INTERVAL) != 0 && spec.key.size() > 1;
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS,
                    spec.flags | (map ? NFT_SET_MAP : 0) | (concat_interval ? NFT_SET_CONCAT : 0));
  if (concat_interval) set_concat_fields(s.get(), spec);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, packed_type(spec.key));
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, packed_len(spec.key));
  if (spec.verdict_map) {
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
  } else if (map) {
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, packed_type(spec.data));
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, packed_len(spec.data));
  }
  set_userdata(s.get(), spec, map);
  Batch& b = batch();
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, b.next_set_id());
  nlmsghdr* nlh =
      b.put(NFT_MSG_NEWSET, family, NLM_F_CREATE, "add set " + where(family, table, spec.name));
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  b.done();
}

void NftTransaction::delete_set(Family family, const std::string& table, const std::string& set) {
  nlmsghdr* nlh = batch().put(NFT_MSG_DELSET, family, 0, "delete set " + where(family, table, set));
  nftnl_set_nlmsg_build_payload(nlh, set_obj(family, table, set).get());
  batch_->done();
}

void NftTransaction::elements_msg(uint16_t type, Family family, const std::string& table,
                                  const std::string& set, const std::vector<Element>& elements) {
  const bool add = type == NFT_MSG_NEWSETELEM;
  const char* verb = add ? "add element to " : "delete element from ";
  for (size_t start = 0; start < elements.size(); start += kElementsPerMsg) {
    SetPtr s = set_obj(family, table, set);
    const size_t end = std::min(elements.size(), start + kElementsPerMsg);
    for (size_t i = start; i < end; ++i) {
      nftnl_set_elem_add(s.get(), elem_obj(elements[i], /*with_value=*/add).release());
    }
    nlmsghdr* nlh = batch().put(
        type, family, add ? NLM_F_CREATE : 0,
        verb + where(family, table, set) + " (" + std::to_string(end - start) + " elements)");
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    batch_->done();
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
  nlmsghdr* nlh = batch().put(NFT_MSG_NEWRULE, rule.family(), NLM_F_CREATE | NLM_F_APPEND,
                              "add rule " + where(rule.family(), table, chain));
  nftnl_rule_nlmsg_build_payload(nlh, rule.get());
  batch_->done();
}

void NftTransaction::delete_rule(Family family, const std::string& table, const std::string& chain,
                                 uint64_t handle) {
  nlmsghdr* nlh = batch().put(
      NFT_MSG_DELRULE, family, 0,
      "delete rule " + where(family, table, chain) + " handle " + std::to_string(handle));
  nftnl_rule_nlmsg_build_payload(nlh, rule_obj(family, table, chain, handle).get());
  batch_->done();
}

void NftTransaction::commit() {
  if (spent_) {
    throw Error(kErrInternal, "nftables transaction committed twice");
  }
  spent_ = true;
  if (!batch_) {
    return;  // nothing queued
  }
  const Outcome outcome = batch_->commit();
  batch_.reset();
  if (outcome.applied()) {
    return;
  }
  if (outcome.could_be_conflict()) {
    const uint32_t now = read_genid(*sock_);
    if (now != genid_) {
      throw Error(kErrTryAgainLater, "the nftables ruleset changed concurrently",
                  outcome.describe() + " (generation " + std::to_string(genid_) + ", now " +
                      std::to_string(now) + ")");
    }
  }
  outcome.raise();
}

}  // namespace cni::nft
