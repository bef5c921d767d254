#pragma once
// Failure injection for the crash tests. Compiled in only with TETHER_TEST_HOOKS (the sanitizer
// build and the host-local-crashtest binary); in a release build crash_point() is empty inline.

namespace cni::hostlocal {

#ifdef TETHER_TEST_HOOKS
// Kills the process with SIGKILL when TETHER_CRASH_AT equals `name`: no destructor, flush or
// unlock runs, exactly like kill -9 from outside at that instant.
void crash_point(const char* name);
#else
inline void crash_point(const char*) {}
#endif

}  // namespace cni::hostlocal
