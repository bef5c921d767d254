// NftTransaction's reads of the live ruleset, and the generation id (nftables' src/cache.c reads
// the same objects the same way, one request per object kind).
#include <libnftnl/common.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/mnl.h"
#include "common/nft.h"
#include "common/nft_batch.h"
#include "common/nft_obj.h"

namespace cni::nft {
namespace {

// The reads' one rule for a netlink answer: ENOENT means "not there" (false); any other error
// is an Error with `what`; success is true.
bool answered(int err, const std::string& what) {
  if (err == -ENOENT) return false;
  if (err < 0) throw Error(kErrInternal, what, std::strerror(-err));
  return true;
}

// Repeats a dump that a concurrent change interrupted (EINTR).
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

std::optional<Hook> chain_hook(const nftnl_chain* c) {
  if (!nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM)) return std::nullopt;
  Hook hook{nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM), nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO),
            nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE) ? nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE) : "",
            std::nullopt};
  if (nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY)) {
    hook.policy = nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY);
  }
  return hook;
}

Bytes elem_bytes(nftnl_set_elem* e, uint16_t attr) {
  uint32_t len = 0;
  auto* p = static_cast<const uint8_t*>(nftnl_set_elem_get(e, attr, &len));
  return p ? Bytes(p, p + len) : Bytes{};
}

Element element_of(nftnl_set_elem* e) {
  Element el;
  el.key = elem_bytes(e, NFTNL_SET_ELEM_KEY);
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_KEY_END)) {
    el.key_end = elem_bytes(e, NFTNL_SET_ELEM_KEY_END);
  }
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_DATA)) {
    el.data = elem_bytes(e, NFTNL_SET_ELEM_DATA);
  }
  if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT)) {
    Verdict v{static_cast<int>(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT)), {}};
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN)) {
      v.chain = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN);
    }
    el.verdict = std::move(v);
  }
  return el;
}

// Appends the elements of one NEWSETELEM message (a dump part or a GETSETELEM answer) to `out`.
void parse_elements(const nlmsghdr* m, std::vector<Element>& out) {
  SetPtr s(non_null(nftnl_set_alloc()));
  if (nftnl_set_elems_nlmsg_parse(m, s.get()) < 0) {
    return;
  }
  ElemIterPtr it(non_null(nftnl_set_elems_iter_create(s.get())));
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it.get()); e != nullptr;
       e = nftnl_set_elems_iter_next(it.get())) {
    out.push_back(element_of(e));
  }
}

}  // namespace

uint32_t read_genid(mnl::Socket& sock) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  const nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, sock.next_seq());
  std::optional<uint32_t> genid;
  int err = sock.talk(nlh, [&](const nlmsghdr* m) {
    GenPtr gen(non_null(nftnl_gen_alloc()));
    if (nftnl_gen_nlmsg_parse(m, gen.get()) == 0) {
      genid = nftnl_gen_get_u32(gen.get(), NFTNL_GEN_ID);
    }
  });
  if (err < 0 || !genid) {
    throw Error(kErrInternal, "cannot read the nftables generation id",
                err < 0 ? std::strerror(-err) : "no reply");
  }
  return *genid;
}

bool NftTransaction::table_exists(Family family, const std::string& table) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, fam(family), NLM_F_ACK, sock_->next_seq());
  nftnl_table_nlmsg_build_payload(nlh, table_obj(family, table).get());
  return answered(sock_->talk(nlh), "cannot read nftables table " + where(family, table));
}

std::optional<std::vector<ChainInfo>> NftTransaction::list_chains(Family family,
                                                                  const std::string& table) {
  if (!table_exists(family, table)) {
    return std::nullopt;
  }
  std::vector<ChainInfo> out;
  int err = with_dump_retry([&] {
    out.clear();
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh =
        nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, fam(family), NLM_F_DUMP, sock_->next_seq());
    nftnl_chain_nlmsg_build_payload(nlh, chain_obj(family, table, {}).get());
    return sock_->talk(nlh, [&](const nlmsghdr* m) {
      ChainPtr c(non_null(nftnl_chain_alloc()));
      if (nftnl_chain_nlmsg_parse(m, c.get()) < 0 ||
          table != nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)) {
        return;
      }
      out.push_back({nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME), chain_hook(c.get()),
                     nftnl_chain_get_u64(c.get(), NFTNL_CHAIN_HANDLE)});
    });
  });
  if (err < 0) {
    throw Error(kErrInternal, "cannot list chains of " + where(family, table), std::strerror(-err));
  }
  return out;
}

std::optional<std::vector<Element>> NftTransaction::list_elements(Family family,
                                                                  const std::string& table,
                                                                  const std::string& set) {
  std::vector<Element> out;
  int err = with_dump_retry([&] {
    out.clear();
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh =
        nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, fam(family), NLM_F_DUMP, sock_->next_seq());
    nftnl_set_elems_nlmsg_build_payload(nlh, set_obj(family, table, set).get());
    return sock_->talk(nlh, [&](const nlmsghdr* m) { parse_elements(m, out); });
  });
  if (!answered(err, "cannot list elements of " + where(family, table, set))) return std::nullopt;
  return out;
}

std::optional<Element> NftTransaction::get_element(Family family, const std::string& table,
                                                   const std::string& set, const Element& probe) {
  SetPtr s = set_obj(family, table, set);
  nftnl_set_elem_add(s.get(), elem_obj(probe, /*with_value=*/false).release());
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, fam(family), NLM_F_ACK, sock_->next_seq());
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  std::vector<Element> found;
  int err = sock_->talk(nlh, [&](const nlmsghdr* m) { parse_elements(m, found); });
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
    nlmsghdr* nlh =
        nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, fam(family), NLM_F_ACK, sock_->next_seq());
    nftnl_chain_nlmsg_build_payload(nlh, chain_obj(family, table, chain).get());
    if (!answered(sock_->talk(nlh), "cannot read chain " + where(family, table, chain))) {
      return std::nullopt;
    }
  }
  std::vector<RuleInfo> out;
  int err = with_dump_retry([&] {
    out.clear();
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh =
        nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, fam(family), NLM_F_DUMP, sock_->next_seq());
    nftnl_rule_nlmsg_build_payload(nlh, rule_obj(family, table, chain).get());
    return sock_->talk(nlh, [&](const nlmsghdr* m) {
      RulePtr r(non_null(nftnl_rule_alloc()));
      if (nftnl_rule_nlmsg_parse(m, r.get()) < 0 ||
          table != nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE) ||
          chain != nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN)) {
        return;
      }
      out.push_back({chain, nftnl_rule_get_u64(r.get(), NFTNL_RULE_HANDLE), rule_comment(r.get())});
    });
  });
  if (!answered(err, "cannot list rules of " + where(family, table, chain))) return std::nullopt;
  return out;
}

}  // namespace cni::nft
