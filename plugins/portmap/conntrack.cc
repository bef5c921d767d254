#include "plugins/portmap/conntrack.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/error.h"
#include "common/mnl.h"

namespace cni::portmap {

namespace {

// What a delete needs of a dumped entry: its original tuple exactly as the kernel sent it, and
// its zone, since entries are looked up per zone.
struct Entry {
  std::vector<uint8_t> orig_tuple;  // the CTA_TUPLE_ORIG payload (nested attributes)
  std::optional<uint16_t> zone;     // network order, as sent
};

// Fills tb[type] for each attribute of a nest (or of the message after `offset`). A C callback
// of mnl_attr_parse: it only stores pointers, so nothing can throw through libmnl.
template <size_t N>
int collect(const nlattr* attr, void* data) {
  auto* tb = static_cast<const nlattr**>(data);
  uint16_t type = mnl_attr_get_type(attr);
  if (type < N) tb[type] = attr;
  return MNL_CB_OK;
}

bool matches(int family, const std::vector<FlushTarget>& targets, const nlattr* orig) {
  const nlattr* tuple[CTA_TUPLE_MAX + 1] = {};
  mnl_attr_parse_nested(orig, collect<CTA_TUPLE_MAX + 1>, tuple);
  if (!tuple[CTA_TUPLE_IP] || !tuple[CTA_TUPLE_PROTO]) return false;
  const nlattr* proto[CTA_PROTO_MAX + 1] = {};
  mnl_attr_parse_nested(tuple[CTA_TUPLE_PROTO], collect<CTA_PROTO_MAX + 1>, proto);
  if (!proto[CTA_PROTO_NUM] || mnl_attr_get_u8(proto[CTA_PROTO_NUM]) != IPPROTO_UDP ||
      !proto[CTA_PROTO_DST_PORT]) {
    return false;
  }
  const uint16_t dport = ntohs(mnl_attr_get_u16(proto[CTA_PROTO_DST_PORT]));
  const nlattr* ip[CTA_IP_MAX + 1] = {};
  mnl_attr_parse_nested(tuple[CTA_TUPLE_IP], collect<CTA_IP_MAX + 1>, ip);
  const nlattr* dst = ip[family == AF_INET ? CTA_IP_V4_DST : CTA_IP_V6_DST];
  for (const FlushTarget& t : targets) {
    if ((t.family == 4) != (family == AF_INET)) continue;
    if (dport < t.port || dport - t.port >= t.count) continue;
    if (t.host_ip) {
      if (!dst || mnl_attr_get_payload_len(dst) != static_cast<uint16_t>(t.host_ip->byte_len()) ||
          std::memcmp(mnl_attr_get_payload(dst), t.host_ip->bytes(),
                      static_cast<size_t>(t.host_ip->byte_len())) != 0) {
        continue;
      }
    }
    return true;
  }
  return false;
}

nlmsghdr* ct_header(char* buf, uint16_t msg, uint16_t flags, int family, uint32_t seq) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = static_cast<uint16_t>((NFNL_SUBSYS_CTNETLINK << 8) | msg);
  nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  nlh->nlmsg_seq = seq;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = static_cast<uint8_t>(family);
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  return nlh;
}

// The kernel cannot filter a dump by port, so the dump is read whole and filtered here;
// deleting while the dump runs would disturb it, so the deletes come after.
std::vector<Entry> dump_matches(mnl::Socket& sock, int family,
                                const std::vector<FlushTarget>& targets) {
  std::vector<Entry> out;
  char req[MNL_SOCKET_BUFFER_SIZE];
  const nlmsghdr* dump = ct_header(req, IPCTNL_MSG_CT_GET, NLM_F_DUMP, family, sock.next_seq());
  int err = sock.talk(dump, [&](const nlmsghdr* nlh) {
    const nlattr* tb[CTA_MAX + 1] = {};
    mnl_attr_parse(nlh, sizeof(nfgenmsg), collect<CTA_MAX + 1>, tb);
    if (!tb[CTA_TUPLE_ORIG] || !matches(family, targets, tb[CTA_TUPLE_ORIG])) return;
    Entry e;
    const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(tb[CTA_TUPLE_ORIG]));
    e.orig_tuple.assign(p, p + mnl_attr_get_payload_len(tb[CTA_TUPLE_ORIG]));
    if (tb[CTA_ZONE]) e.zone = mnl_attr_get_u16(tb[CTA_ZONE]);
    out.push_back(std::move(e));
  });
  if (err < 0) {
    throw Error(kErrInternal, "cannot dump the conntrack table", std::strerror(-err));
  }
  return out;
}

// True when the entry was deleted; an entry that vanished meanwhile is what we wanted too.
bool delete_entry(mnl::Socket& sock, int family, const Entry& e) {
  char req[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* del = ct_header(req, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, family, sock.next_seq());
  mnl_attr_put(del, CTA_TUPLE_ORIG | NLA_F_NESTED, e.orig_tuple.size(), e.orig_tuple.data());
  if (e.zone) mnl_attr_put_u16(del, CTA_ZONE, *e.zone);
  int err = sock.talk(del);
  if (err < 0 && err != -ENOENT) {
    throw Error(kErrInternal, "cannot delete a conntrack entry", std::strerror(-err));
  }
  return err == 0;
}

}  // namespace

size_t flush_udp_conntrack(mnl::Socket& sock, const std::vector<FlushTarget>& targets) {
  size_t deleted = 0;
  for (int family : {AF_INET, AF_INET6}) {
    bool wanted = false;
    for (const FlushTarget& t : targets) wanted = wanted || (t.family == 4) == (family == AF_INET);
    if (!wanted) continue;
    for (const Entry& e : dump_matches(sock, family, targets)) {
      if (delete_entry(sock, family, e)) ++deleted;
    }
  }
  return deleted;
}

}  // namespace cni::portmap
