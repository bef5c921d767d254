// dns-sidecar's config: CNI_ARGS and the config (domainName, upstreams, runtimeConfig.aliases,
// args.cni.*).
#include "plugins/dns-sidecar/config.h"
#include "tests/fuzz/config_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return tether_fuzz::run_config(data, size, [](const cni::NetConf& conf, const cni::CniArgs& a) {
    (void)cni::dns::Config::parse(conf, a);
  });
}
