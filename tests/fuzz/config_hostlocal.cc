// host-local's config: CNI_ARGS (IP=) and the ipam section (ranges, routes, dataDir, dns).
#include "plugins/ipam-host-local/config.h"
#include "tests/fuzz/config_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return tether_fuzz::run_config(data, size, [](const cni::NetConf& conf, const cni::CniArgs& a) {
    auto c = cni::hostlocal::Config::parse(conf, a);
    for (const auto& set : c.range_sets) {
      (void)cni::hostlocal::set_str(set);
      // The allocator's walk over each set, from its start and from each range's end.
      cni::hostlocal::RangeIter it(set, std::nullopt);
      for (int i = 0; i < 4 && it.next(); ++i) {
      }
      for (const auto& r : set) {
        (void)r.allocatable();
        cni::hostlocal::RangeIter from(set, r.end());
        for (int i = 0; i < 4 && from.next(); ++i) {
        }
      }
    }
  });
}
