#pragma once
// One DNS query in, one decision out: the reply bytes for names we own, the servers to forward
// to for everything else, or nothing at all. Pure (no sockets), so unit tests feed it queries
// built with ldns. The wire format is ldns's throughout.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/ip.h"
#include "plugins/dns-sidecar/lookup.h"
#include "plugins/dns-sidecar/upstream.h"

namespace cni::dns {

enum class Transport { kUdp, kTcp };

// Our advertised EDNS0 UDP payload size (the DNS flag day 2020 value).
inline constexpr uint16_t kEdnsSize = 1232;

struct Decision {
  enum class Kind { kDrop, kReply, kForward };
  Kind kind = Kind::kDrop;
  std::vector<uint8_t> reply;       // kReply: the message to send back
  std::vector<Upstream> upstreams;  // kForward: the servers to try, in order
};

// Replies that depend only on the query's bytes and the client's scope (everything except
// shuffled multi-address answers and forwards), keyed by transport, scope and the query without
// its ID. Each entry carries the Index::stamp() of its scope at the time it was stored, and a
// lookup with another stamp misses: a registration invalidates exactly the replies of the
// scopes it touches, at no cost. The owner clears it when the host's upstreams change.
// Bounded: it starts over when full.
class ReplyCache {
 public:
  static constexpr size_t kMaxEntries = 16384;
  // True and `out` set (with the query's ID) on a hit.
  bool find(const std::string& key, uint64_t stamp, const uint8_t* wire,
            std::vector<uint8_t>* out) const;
  void store(std::string key, uint64_t stamp, const std::vector<uint8_t>& reply);
  void clear() { map_.clear(); }
  size_t size() const { return map_.size(); }

 private:
  std::unordered_map<std::string, std::pair<uint64_t, std::vector<uint8_t>>> map_;
};

// `source` is the client's address; `host` the servers of the host's resolv.conf; `cache`
// (optional) remembers and replays deterministic replies.
// - Sources outside every registered network, unparsable messages and responses: kDrop (we
//   are not an open resolver, and never answer a response).
// - Names in scope: A/AAAA/ANY from every matching container, shuffled per query; NODATA for a
//   name that exists without records of the asked type; PTR for scope addresses.
// - Missing names under a scope network's domain, and anything on internal-only scopes:
//   NXDOMAIN. Otherwise kForward, or SERVFAIL when there is no server to forward to.
// Over UDP the reply fits 512 bytes or the client's EDNS0 size, dropping answers and setting TC
// when it does not; over TCP it is complete.
Decision answer_query(const Index& index, const IpAddr& source, const uint8_t* wire, size_t len,
                      Transport transport, const std::vector<Upstream>& host, std::minstd_rand& rng,
                      ReplyCache* cache = nullptr);

// What a server answered to the forwarded `query`, as the client gets it; nullopt when it is no
// reply to it (it does not parse, is not a response, or answers another ID, opcode or
// question): that server failed. Over UDP a reply larger than the client's buffer (512 bytes or
// its EDNS0 size) becomes the header and question with TC set: the client asks again over TCP.
std::optional<std::vector<uint8_t>> upstream_reply(const uint8_t* query, size_t query_len,
                                                   const uint8_t* reply, size_t reply_len,
                                                   Transport transport);

// A reply to `query` with `rcode` and no answers (SERVFAIL when forwarding failed); empty when
// the query does not parse.
std::vector<uint8_t> error_reply(const uint8_t* query, size_t len, int rcode, Transport transport);

}  // namespace cni::dns
