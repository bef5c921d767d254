#include "plugins/dns-sidecar/answer.h"

#include <algorithm>
#include <optional>

#include "plugins/dns-sidecar/ldns_ptr.h"
#include "plugins/dns-sidecar/names.h"

namespace cni::dns {

namespace {

constexpr size_t kUdpLimit = 512;  // RFC 1035, for clients without EDNS0
constexpr size_t kTcpLimit = 65535;

PktPtr parse(const uint8_t* wire, size_t len) {
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, wire, len) != LDNS_STATUS_OK) return nullptr;
  return PktPtr(raw);
}

// The normalized text of a name, through a reused buffer (no allocation per query once warm).
std::string name_text(const ldns_rdf* dname) {
  thread_local BufferPtr buf(ldns_buffer_new(256));
  ldns_buffer_clear(buf.get());
  if (ldns_rdf2buffer_str_dname(buf.get(), dname) != LDNS_STATUS_OK) return {};
  auto* data = reinterpret_cast<const char*>(ldns_buffer_begin(buf.get()));
  return normalize_name(std::string_view(data, ldns_buffer_position(buf.get())));
}

PktPtr make_reply(const ldns_pkt* q, ldns_pkt_rcode rcode, bool authoritative, bool recursion) {
  PktPtr r(ldns_pkt_new());
  ldns_pkt_set_id(r.get(), ldns_pkt_id(q));
  ldns_pkt_set_qr(r.get(), true);
  ldns_pkt_set_opcode(r.get(), ldns_pkt_get_opcode(q));
  ldns_pkt_set_rd(r.get(), ldns_pkt_rd(q));
  ldns_pkt_set_cd(r.get(), ldns_pkt_cd(q));
  ldns_pkt_set_ra(r.get(), recursion);
  ldns_pkt_set_aa(r.get(), authoritative);
  ldns_pkt_set_rcode(r.get(), static_cast<uint8_t>(rcode));
  if (ldns_pkt_qdcount(q) == 1) {
    ldns_pkt_push_rr(r.get(), LDNS_SECTION_QUESTION,
                     ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(q), 0)));
  }
  if (ldns_pkt_edns(q)) ldns_pkt_set_edns_udp_size(r.get(), kEdnsSize);
  return r;
}

size_t size_limit(const ldns_pkt* q, Transport t) {
  if (t == Transport::kTcp) return kTcpLimit;
  if (!ldns_pkt_edns(q)) return kUdpLimit;
  return std::max<size_t>(kUdpLimit, ldns_pkt_edns_udp_size(q));
}

// The reply's wire form within `limit`: answers are dropped from the end, with TC set, until it
// fits (the client retries over TCP for the rest).
std::vector<uint8_t> to_wire(ldns_pkt* p, size_t limit) {
  for (;;) {
    uint8_t* raw = nullptr;
    size_t n = 0;
    if (ldns_pkt2wire(&raw, p, &n) != LDNS_STATUS_OK) return {};
    MallocPtr<uint8_t> wire(raw);
    if (n <= limit || ldns_pkt_ancount(p) == 0) return {wire.get(), wire.get() + n};
    RrPtr dropped(ldns_rr_list_pop_rr(ldns_pkt_answer(p)));
    ldns_pkt_set_ancount(p, static_cast<uint16_t>(ldns_pkt_ancount(p) - 1));
    ldns_pkt_set_tc(p, true);
  }
}

void push_answer(ldns_pkt* r, const ldns_rdf* owner, ldns_rr_type type, uint32_t ttl,
                 ldns_rdf* rdata) {
  ldns_rr* rr = ldns_rr_new();
  ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
  ldns_rr_set_type(rr, type);
  ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr, ttl);
  ldns_rr_push_rdf(rr, rdata);
  ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, rr);
}

bool is_reverse(std::string_view name) {
  return name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa");
}

Decision reply(ldns_pkt* r, const ldns_pkt* q, Transport t) {
  return {Decision::Kind::kReply, to_wire(r, size_limit(q, t)), {}};
}

// The cache key: transport, who is asking (a container, or the set of networks of an
// unregistered source) and the query after its ID.
std::string cache_key(const Scope& scope, Transport t, const uint8_t* wire, size_t len) {
  std::string key;
  key.reserve(len + 16);
  key.push_back(t == Transport::kUdp ? 'u' : 't');
  if (scope.container) {
    uint64_t c = scope.container->uid;
    key.push_back('c');
    key.append(reinterpret_cast<const char*>(&c), sizeof(c));
  } else {
    key.push_back('n');
    for (uint32_t n : scope.networks) key.append(reinterpret_cast<const char*>(&n), sizeof(n));
    key.push_back('/');
  }
  key.append(reinterpret_cast<const char*>(wire) + 2, len - 2);
  return key;
}

// A name of the index: its PTR, or its A/AAAA records (NODATA for other types), or NXDOMAIN
// for a local name that does not exist; nullopt when the index has no answer.
std::optional<Decision> answer_local(const Index& index, const Scope& scope, ldns_pkt* q,
                                     Transport transport, std::minstd_rand& rng, bool forward,
                                     bool* cacheable) {
  const ldns_rr* question = ldns_rr_list_rr(ldns_pkt_question(q), 0);
  const ldns_rdf* owner = ldns_rr_owner(question);
  ldns_rr_type qtype = ldns_rr_get_type(question);
  std::string name = name_text(owner);
  if (is_reverse(name)) {
    auto target = index.resolve_ptr(scope, name);
    if (!target) return std::nullopt;
    PktPtr r = make_reply(q, LDNS_RCODE_NOERROR, true, forward);
    if (qtype == LDNS_RR_TYPE_PTR || qtype == LDNS_RR_TYPE_ANY) {
      push_answer(r.get(), owner, LDNS_RR_TYPE_PTR, index.ttl(scope),
                  ldns_dname_new_frm_str(target->c_str()));
    }
    return reply(r.get(), q, transport);
  }
  Resolution res = index.resolve(scope, name);
  if (res.kind == Resolution::Kind::kNxDomain) {
    return reply(make_reply(q, LDNS_RCODE_NXDOMAIN, true, forward).get(), q, transport);
  }
  if (res.kind != Resolution::Kind::kFound) return std::nullopt;
  PktPtr r = make_reply(q, LDNS_RCODE_NOERROR, true, forward);
  bool any = qtype == LDNS_RR_TYPE_ANY;
  // Other types of a local name (MX, TXT...) are NODATA: its zone is ours, not upstream's.
  std::erase_if(res.addresses, [&](const IpAddr& ip) {
    return !any && qtype != (ip.is_v4() ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA);
  });
  std::shuffle(res.addresses.begin(), res.addresses.end(), rng);
  *cacheable = res.addresses.size() <= 1;
  uint32_t ttl = index.ttl(scope);
  for (const auto& ip : res.addresses) {
    push_answer(r.get(), owner, ip.is_v4() ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA, ttl,
                ldns_rdf_new_frm_data(ip.is_v4() ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA,
                                      static_cast<size_t>(ip.byte_len()), ip.bytes()));
  }
  return reply(r.get(), q, transport);
}

// Everything but the cache. `cacheable` says whether the reply depends on the query and the
// scope alone.
Decision answer_uncached(const Index& index, const Scope& scope, const uint8_t* wire, size_t len,
                         Transport transport, const std::vector<Upstream>& host,
                         std::minstd_rand& rng, bool* cacheable) {
  PktPtr q = parse(wire, len);
  if (!q || ldns_pkt_qr(q.get())) return {};
  *cacheable = true;
  bool forward = index.may_forward(scope);
  if (ldns_pkt_get_opcode(q.get()) != LDNS_PACKET_QUERY) {
    return reply(make_reply(q.get(), LDNS_RCODE_NOTIMPL, false, forward).get(), q.get(), transport);
  }
  if (ldns_pkt_qdcount(q.get()) != 1) {
    return reply(make_reply(q.get(), LDNS_RCODE_FORMERR, false, forward).get(), q.get(), transport);
  }
  ldns_rr_class qclass = ldns_rr_get_class(ldns_rr_list_rr(ldns_pkt_question(q.get()), 0));
  if (qclass == LDNS_RR_CLASS_IN || qclass == LDNS_RR_CLASS_ANY) {
    if (auto d = answer_local(index, scope, q.get(), transport, rng, forward, cacheable)) {
      return std::move(*d);
    }
  }
  if (!forward) {
    return reply(make_reply(q.get(), LDNS_RCODE_NXDOMAIN, false, false).get(), q.get(), transport);
  }
  Decision d;
  d.upstreams =
      select_upstreams(scope.container ? scope.container->upstreams : std::vector<Upstream>{},
                       index.network_upstreams(scope), host, index.listen_addresses());
  if (d.upstreams.empty()) {
    *cacheable = false;  // the host's servers may appear without the index changing
    return reply(make_reply(q.get(), LDNS_RCODE_SERVFAIL, false, forward).get(), q.get(),
                 transport);
  }
  d.kind = Decision::Kind::kForward;
  return d;
}

}  // namespace

bool ReplyCache::find(const std::string& key, uint64_t stamp, const uint8_t* wire,
                      std::vector<uint8_t>* out) const {
  auto it = map_.find(key);
  if (it == map_.end() || it->second.first != stamp) return false;
  *out = it->second.second;
  LDNS_ID_SET(out->data(), LDNS_ID_WIRE(wire));
  return true;
}

void ReplyCache::store(std::string key, uint64_t stamp, const std::vector<uint8_t>& reply) {
  if (map_.size() >= kMaxEntries) map_.clear();
  map_.insert_or_assign(std::move(key), std::pair{stamp, reply});
}

Decision answer_query(const Index& index, const IpAddr& source, const uint8_t* wire, size_t len,
                      Transport transport, const std::vector<Upstream>& host, std::minstd_rand& rng,
                      ReplyCache* cache) {
  auto scope = index.scope_for(source);
  if (!scope || len < LDNS_HEADER_SIZE) return {};
  std::string key;
  if (cache) {
    key = cache_key(*scope, transport, wire, len);
    Decision hit{Decision::Kind::kReply, {}, {}};
    if (cache->find(key, index.stamp(*scope), wire, &hit.reply)) return hit;
  }
  bool cacheable = false;
  Decision d = answer_uncached(index, *scope, wire, len, transport, host, rng, &cacheable);
  if (cache && cacheable && d.kind == Decision::Kind::kReply && !d.reply.empty()) {
    cache->store(std::move(key), index.stamp(*scope), d.reply);
  }
  return d;
}

std::optional<std::vector<uint8_t>> upstream_reply(const uint8_t* query, size_t query_len,
                                                   const uint8_t* reply, size_t reply_len,
                                                   Transport transport) {
  PktPtr q = parse(query, query_len);
  PktPtr r = parse(reply, reply_len);
  if (!q || !r || !ldns_pkt_qr(r.get()) || ldns_pkt_id(r.get()) != ldns_pkt_id(q.get()) ||
      ldns_pkt_get_opcode(r.get()) != ldns_pkt_get_opcode(q.get()) ||
      ldns_pkt_qdcount(q.get()) != 1) {
    return std::nullopt;
  }
  // A server may leave the question out of an error (FORMERR, NOTIMP...), never out of an answer.
  if (ldns_pkt_qdcount(r.get()) != 1 &&
      (ldns_pkt_qdcount(r.get()) != 0 || ldns_pkt_get_rcode(r.get()) == LDNS_RCODE_NOERROR)) {
    return std::nullopt;
  }
  if (ldns_pkt_qdcount(r.get()) == 1) {
    const ldns_rr* asked = ldns_rr_list_rr(ldns_pkt_question(q.get()), 0);
    const ldns_rr* told = ldns_rr_list_rr(ldns_pkt_question(r.get()), 0);
    if (ldns_dname_compare(ldns_rr_owner(asked), ldns_rr_owner(told)) != 0 ||
        ldns_rr_get_type(asked) != ldns_rr_get_type(told) ||
        ldns_rr_get_class(asked) != ldns_rr_get_class(told)) {
      return std::nullopt;
    }
  }
  size_t limit = size_limit(q.get(), transport);
  if (reply_len <= limit) return std::vector<uint8_t>(reply, reply + reply_len);
  PktPtr t = make_reply(q.get(), ldns_pkt_get_rcode(r.get()), false, true);
  ldns_pkt_set_tc(t.get(), true);
  return to_wire(t.get(), limit);
}

std::vector<uint8_t> error_reply(const uint8_t* query, size_t len, int rcode, Transport transport) {
  PktPtr q = parse(query, len);
  if (!q) return {};
  PktPtr r = make_reply(q.get(), static_cast<ldns_pkt_rcode>(rcode), false, true);
  return to_wire(r.get(), size_limit(q.get(), transport));
}

}  // namespace cni::dns
