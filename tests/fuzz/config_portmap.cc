// portmap's config: portMappings (runtimeConfig), conditions, and the plan made of it with the
// prevResult's addresses (what ADD would put into nftables).
#include "plugins/portmap/config.h"
#include "plugins/portmap/plan.h"
#include "tests/fuzz/config_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return tether_fuzz::run_config(data, size, [](const cni::NetConf& conf, const cni::CniArgs&) {
    auto c = cni::portmap::Config::parse(conf);
    cni::portmap::ContainerAddrs addrs;
    if (conf.prev_result) addrs = cni::portmap::container_addresses(*conf.prev_result, "eth0");
    if (!addrs.v4 && !addrs.v6) addrs.v4 = cni::Prefix::parse("10.88.0.5/16");
    (void)cni::portmap::make_plan(c, addrs);
    for (const auto& cond : c.conditions_v4) (void)cond.str(false);
    for (const auto& cond : c.conditions_v6) (void)cond.str(true);
  });
}
