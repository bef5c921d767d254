// A result as a plugin reads it (prevResult, a delegated IPAM plugin's output): Result::from_json,
// printed again in every version the plugins speak. What is printed must read back the same.
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/netconf.h"
#include "common/types.h"
#include "plugins/loopback/go_result.h"
#include "plugins/portmap/config.h"
#include "tests/fuzz/fuzz.h"

using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  json j;
  cni::Result r;
  try {
    j = cni::parse_untrusted(tether_fuzz::as_text(data, size), cni::kErrDecode);
    if (j.is_discarded()) return 0;
    r = cni::Result::from_json(j);
  } catch (const cni::Error& e) {
    tether_fuzz::require(e.code() > 0, "Result::from_json error code", e.what());
    return 0;
  }
  for (const auto& v : cni::supported_versions()) {
    json out = r.to_json(v);
    std::string text = out.dump(-1, ' ', false, json::error_handler_t::replace);
    // A result we print must be one we (and so the next plugin in the chain) read back.
    cni::Result again;
    try {
      again = cni::Result::from_json(json::parse(text));
    } catch (const std::exception& e) {
      tether_fuzz::violated("printed result does not read back", e.what());
    }
    tether_fuzz::require(again.to_json(v) == json::parse(text), "result round trip", text);
  }
  for (auto type : {cni::loopback::GoType::k020, cni::loopback::GoType::k040,
                    cni::loopback::GoType::k100, cni::loopback::GoType::k110}) {
    (void)cni::loopback::go_result_text(r, "1.1.0", type);
  }
  for (const auto& iface : r.interfaces) (void)cni::portmap::container_addresses(r, iface.name);
  (void)cni::portmap::container_addresses(r, "eth0");
  return 0;
}
