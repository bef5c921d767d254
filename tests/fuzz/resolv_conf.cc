// resolv.conf as its two readers parse it: host-local's (nameserver, domain, search, options
// into the result's dns) and the DNS daemon's (the host's upstream servers).
#include "plugins/ipam-host-local/resolv_conf.h"

#include <nlohmann/json.hpp>

#include "plugins/dns-sidecar/upstream.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  std::string text(tether_fuzz::as_text(data, size));
  cni::Dns dns = cni::hostlocal::parse_resolv_conf(text);
  (void)cni::dns_to_json(dns).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (const auto& s : cni::dns::parse_resolv_conf(text)) (void)s.str();
  return 0;
}
