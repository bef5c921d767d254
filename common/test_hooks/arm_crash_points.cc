// Linked into the <plugin>-crashtest binaries only (never into tether-common, whose sources are
// common/*.cc): turns the crash points of common/crash_point.h on before main runs.
#include "common/crash_point.h"

namespace {

[[maybe_unused]] const bool kArmed = (cni::g_crash_hooks = true);

}  // namespace
