// bridge's per-attachment state file (<stateDir>/<network>/<containerID>:<ifname>.json).
#include "plugins/bridge/state.h"
#include "tests/fuzz/state_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tether_fuzz::Scratch dir;
  static const auto store = cni::bridge::state_store(dir.path());
  return tether_fuzz::run_state(data, size, store);
}
