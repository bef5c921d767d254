#include "plugins/dns-sidecar/daemon_client.h"

#include <chrono>

#include "common/daemon.h"
#include "common/error.h"
#include "common/files.h"
#include "plugins/dns-sidecar/daemon.h"

namespace cni::dns {

namespace {

// A daemon the plugin starts exits after this long without registrations; the next ADD
// starts another. A daemon under systemd runs with --idle-exit 0.
constexpr const char* kIdleExitSeconds = "60";
constexpr auto kStartWait = std::chrono::seconds(5);

}  // namespace

// A connection to the daemon, starting `tether-dns daemon --daemonize` (installed beside this
// binary) when none listens.
control::Client ensure_daemon(const Config& c) {
  std::vector<std::string> argv = {kDaemonProgram, "daemon",      "--daemonize",
                                   "--state-dir",  c.state_dir,   "--socket",
                                   c.socket,       "--idle-exit", kIdleExitSeconds};
  if (!c.resolv_conf.empty()) argv.insert(argv.end(), {"--resolv-conf", c.resolv_conf});
  if (!c.log_level.empty()) argv.insert(argv.end(), {"--log-level", c.log_level});
  if (!c.cluster_file.empty()) argv.insert(argv.end(), {"--cluster", c.cluster_file});
  return cni::daemon::connect_or_start({.who = kDaemon,
                                        .socket = c.socket,
                                        .state_dir = c.state_dir,
                                        .program = sibling_executable(kDaemonProgram),
                                        .argv = std::move(argv),
                                        .log = default_log_path(c.state_dir),
                                        .code = kErrNotAvailable,
                                        .wait = kStartWait});
}

// One request, starting the daemon if needed; a daemon that went away mid-request (an idle
// exit racing with us) gets one more chance.
json call_daemon(const Config& c, const json& request) {
  for (int attempt = 0;; ++attempt) {
    control::Client client = ensure_daemon(c);
    try {
      return client.call(request);
    } catch (const Error& e) {
      if (e.code() != kErrNotAvailable || attempt > 0) throw;
    }
  }
}

}  // namespace cni::dns
