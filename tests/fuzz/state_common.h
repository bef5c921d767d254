#pragma once
// The state-file targets: the input is the content of one attachment's state file, read back
// through the plugin's own AttachmentStore as DEL, GC (load: corrupt is absent, never an
// exception) and CHECK (load_checked: corrupt is error 100) do. A state that loads is saved
// and must load again as the same state.
#include <nlohmann/json.hpp>

#include "common/attachment_store.h"
#include "common/error.h"
#include "common/files.h"
#include "tests/fuzz/fuzz.h"

namespace tether_fuzz {

template <class Store>
int run_state(const uint8_t* data, size_t size, const Store& store) {
  quiet();
  static const cni::AttachmentKey key{"fuzznet", "c0ffee", "eth0"};
  std::string path = store.path(key);
  cni::ensure_dir(path.substr(0, path.rfind('/')), 0700);
  cni::atomic_write(path, as_text(data, size), 0600);
  auto loaded = store.load(key);
  try {
    auto checked = store.load_checked(key);
    require(checked.has_value() == loaded.has_value(), "load and load_checked agree");
  } catch (const cni::Error& e) {
    require(e.code() == cni::kErrStateCorrupt, "a corrupt state is error 100", e.what());
    require(!loaded, "load_checked refuses what load accepted", e.what());
  }
  if (loaded) {
    nlohmann::json first = loaded->to_json();
    store.save(key, *loaded);
    auto again = store.load_checked(key);
    require(again.has_value(), "a saved state loads");
    require(again->to_json() == first, "state round trip", first.dump());
  }
  store.remove(key);
  return 0;
}

}  // namespace tether_fuzz
