// bridge's config: CNI_ARGS and the network config (runtimeConfig, args.cni, ipam, overlay).
#include "plugins/bridge/config.h"
#include "tests/fuzz/config_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return tether_fuzz::run_config(data, size, [](const cni::NetConf& conf, const cni::CniArgs& a) {
    auto c = cni::bridge::Config::parse(conf, a);
    (void)c.masq_exclusions();
    (void)c.overlay_device();
    (void)c.network_state_dir();
  });
}
