#pragma once
// One DNS query in, one decision out: the reply bytes for names we own, the servers to forward
// to for everything else, or nothing at all. Pure (no sockets), so unit tests feed it queries
// built with ldns. The wire format is ldns's throughout.
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
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
// its ID. The owner clears it whenever the index changes. Bounded: it starts over when full.
class ReplyCache {
 public:
  static constexpr size_t kMaxEntries = 16384;
  // True and `out` set (with the query's ID) on a hit.
  bool find(const std::string& key, const uint8_t* wire, std::vector<uint8_t>* out) const;
  void store(std::string key, const std::vector<uint8_t>& reply);
  void clear() { map_.clear(); }
  size_t size() const { return map_.size(); }

 private:
  std::unordered_map<std::string, std::vector<uint8_t>> map_;
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

// A reply to `query` with `rcode` and no answers (SERVFAIL when forwarding failed); empty when
// the query does not parse.
std::vector<uint8_t> error_reply(const uint8_t* query, size_t len, int rcode, Transport transport);

}  // namespace cni::dns
