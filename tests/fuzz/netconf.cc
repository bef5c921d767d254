// The network configuration a plugin reads on stdin: NetConf::parse with prevResult,
// runtimeConfig, args and dns, then what every plugin derives from it (the `dns` capability,
// cni.dev/valid-attachments, the prevResult printed in each version).
#include "common/netconf.h"

#include <nlohmann/json.hpp>

#include "common/dns_settings.h"
#include "common/error.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  cni::NetConf conf;
  try {
    conf = cni::NetConf::parse(tether_fuzz::as_text(data, size));
  } catch (const cni::Error& e) {
    tether_fuzz::require(e.code() > 0, "NetConf::parse error code", e.what());
    return 0;
  }
  try {
    (void)conf.ipam_type();
    (void)cni::runtime_dns(conf.runtime_config);
    (void)cni::valid_attachments(conf.raw);
  } catch (const cni::Error& e) {
    tether_fuzz::require(e.code() > 0, "config error code", e.what());
  }
  if (conf.prev_result) {
    for (const auto& v : cni::supported_versions()) {
      (void)conf.prev_result->to_json(v).dump(-1, ' ', false,
                                              nlohmann::json::error_handler_t::replace);
    }
  }
  return 0;
}
