// The notes of a PT_NOTE segment, as bridge reads a delegate's GNU build ID (common/build_id.h)
// from whatever file CNI_PATH names: the first byte picks the alignment (4 or 8), the rest is
// the segment.
#include "common/build_id.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  if (size == 0) return 0;
  const size_t align = (data[0] & 1) ? 8 : 4;
  if (auto id = cni::gnu_build_id_in_notes({data + 1, size - 1}, align)) {
    if (id->empty() || id->size() % 2 != 0) __builtin_trap();
  }
  return 0;
}
