// dns-sidecar's record files: what the plugin saves and the daemon reloads at start and `sync`.
#include "plugins/dns-sidecar/registry.h"
#include "tests/fuzz/state_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tether_fuzz::Scratch dir;
  static const cni::dns::RecordStore store(dir.path());
  // The daemon's start-up reads every record of the directory.
  static const cni::AttachmentKey key{"fuzznet", "c0ffee", "eth0"};
  std::string path = store.path(key);
  cni::ensure_dir(path.substr(0, path.rfind('/')), 0700);
  cni::atomic_write(path, tether_fuzz::as_text(data, size), 0600);
  (void)store.load_all();
  return tether_fuzz::run_state(data, size, store);
}
