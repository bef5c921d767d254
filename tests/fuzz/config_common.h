#pragma once
// The config targets: "<CNI_ARGS>\n<config JSON>", the two outside inputs a plugin's
// Config::parse reads. Errors must be cni::Error with a positive code; anything else escaping
// is a crash.
#include <functional>

#include "common/error.h"
#include "common/netconf.h"
#include "tests/fuzz/fuzz.h"

namespace tether_fuzz {

inline int run_config(const uint8_t* data, size_t size,
                      const std::function<void(const cni::NetConf&, const cni::CniArgs&)>& parse) {
  quiet();
  auto [args_line, stdin_text] = first_line(as_text(data, size));
  try {
    cni::CniArgs args = cni::CniArgs::parse(args_line);
    cni::NetConf conf = cni::NetConf::parse(stdin_text);
    parse(conf, args);
  } catch (const cni::Error& e) {
    require(e.code() > 0, "config error code", e.what());
    require(cni::valid_utf8(e.msg()) && cni::valid_utf8(e.details()), "error text is UTF-8",
            e.what());
  }
  return 0;
}

}  // namespace tether_fuzz
