#include "common/crash_point.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace cni {

#ifdef TETHER_TEST_HOOKS
bool g_crash_hooks = true;
#else
bool g_crash_hooks = false;
#endif

namespace {

struct Armed {
  bool on = false;
  std::string plugin;
  std::string name;  // empty: by count
  long nth = 0;
  // Atomic: bridge's DEL runs its IPAM on a second thread, host-local's verbs in bridge's own
  // process when it carries it (common/invoke.h), and both threads pass points.
  std::atomic<long> reached{0};
  std::string trace;
};

Armed& armed() {
  static Armed a;
  return a;
}

}  // namespace

void arm_crash_points(const char* plugin) {
  if (!g_crash_hooks) return;
  Armed& a = armed();
  a.plugin = plugin;
  if (const char* t = std::getenv("TETHER_CRASH_TRACE")) a.trace = t;
  const char* at = std::getenv("TETHER_CRASH_AT");
  a.on = !a.trace.empty();
  if (!at || !*at) return;
  std::string spec = at;
  if (auto colon = spec.find(':'); colon != std::string::npos) {
    if (spec.substr(0, colon) != a.plugin) return;
    spec = spec.substr(colon + 1);
  }
  if (!spec.empty() && spec[0] == '#') {
    a.nth = std::strtol(spec.c_str() + 1, nullptr, 10);
    if (a.nth <= 0) return;
  } else {
    a.name = spec;
  }
  a.on = true;
}

void crash_point_reached(const char* name) {
  Armed& a = armed();
  if (!a.on) return;
  const long n = ++a.reached;
  if (!a.trace.empty()) {
    std::string line = a.plugin + " " + std::to_string(n) + " " + name + "\n";
    int fd = ::open(a.trace.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      (void)!::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  if ((a.nth > 0 && n == a.nth) || (!a.name.empty() && a.name == name)) {
    ::kill(::getpid(), SIGKILL);
    ::_exit(137);  // not reached
  }
}

}  // namespace cni
