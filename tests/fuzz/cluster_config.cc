// The cluster file (/etc/tether/cluster.json) that host-local, bridge, dns-sidecar and
// tether-agent read: ClusterConfig::parse.
#include <nlohmann/json.hpp>

#include "common/cluster.h"
#include "common/error.h"
#include "common/netconf.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  try {
    auto j = cni::parse_untrusted(tether_fuzz::as_text(data, size), cni::kErrInvalidConfig);
    if (j.is_discarded()) return 0;
    auto c = cni::cluster::ClusterConfig::parse(j, "cluster");
    (void)c.key("nodes/x");
  } catch (const cni::Error& e) {
    tether_fuzz::require(e.code() > 0, "cluster error code", e.what());
  }
  return 0;
}
