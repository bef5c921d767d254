#pragma once
// Failure injection for the kill -9 tests: crash_point() marks an instant between two effects
// (a kernel change, a file written or removed, a delegated plugin, a daemon told) where a kill
// could separate them. The common effect primitives (files.cc, netlink.cc, nft_run.cc,
// invoke.cc, control.cc) carry one after each effect, so every plugin is covered; a plugin adds
// named ones where a step of its own matters (host-local: "after-lock", ...).
//
// Armed only in a test binary: the ASan+UBSan build (TETHER_TEST_HOOKS) and the <plugin>-crashtest
// binaries that link common/test_hooks/arm_crash_points.cc. A release plugin never reads
// TETHER_CRASH_AT; its crash_point() is one test of a false flag.
//
// TETHER_CRASH_AT, read once by plugin_main (never by the DNS daemon or another subcommand):
//   <name>            SIGKILL at the first crash point called <name>
//   #<n>              SIGKILL at the n-th crash point this process reaches (1-based)
//   <plugin>:<spec>   the same, only in the plugin called <plugin> (bridge runs host-local with
//                     its own environment: "host-local:#3" kills the delegated IPAM only; when
//                     bridge carries host-local in its own process, common/invoke.h, host-local's
//                     points are bridge's and count in bridge's sequence)
// TETHER_CRASH_TRACE=<file>: each crash point reached is appended to <file> as
// "<plugin> <n> <name>", so a test knows how many points a verb passes.

namespace cni {

// True in a binary built or linked for the crash tests.
extern bool g_crash_hooks;

// Reads TETHER_CRASH_AT and TETHER_CRASH_TRACE for `plugin`; a no-op unless g_crash_hooks.
void arm_crash_points(const char* plugin);

void crash_point_reached(const char* name);

// Kills the process with SIGKILL when armed for this point: no destructor, flush or unlock
// runs, exactly like kill -9 from outside at that instant.
inline void crash_point(const char* name) {
  if (g_crash_hooks) crash_point_reached(name);
}

}  // namespace cni
