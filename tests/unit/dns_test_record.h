#pragma once
// A local dns-sidecar record for tests (tests/unit and tests/fuzz): container `cid` on network
// `net` (ifname eth0), its addresses, one gateway, domain test.internal, upstream 10.99.0.2.
#include <vector>

#include "common/ip.h"
#include "plugins/dns-sidecar/registry.h"

namespace cni::dns::test {

inline Record rec(const char* net, const char* cid, const char* name,
                  std::vector<const char*> addrs, const char* gw) {
  Record r;
  r.key = {{net, cid, "eth0"}, ""};
  r.name = name;
  for (auto* a : addrs) r.addresses.push_back(*Prefix::parse(a));
  r.gateways = {*IpAddr::parse(gw)};
  r.net.domain = "test.internal";
  r.net.upstreams = {"10.99.0.2"};
  return r;
}

}  // namespace cni::dns::test
