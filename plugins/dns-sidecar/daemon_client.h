#pragma once
// The plugin's side of the DNS daemon: a control connection, starting `tether-dns daemon
// --daemonize` (installed beside the plugin) when none listens.
#include "common/control.h"
#include "plugins/dns-sidecar/config.h"

namespace cni::dns {

// A connection to the daemon, starting one when none listens. Concurrent ADDs serialize on
// <stateDir>/start.lock, so one of them starts the daemon and the others find it serving.
control::Client ensure_daemon(const Config& c);

// One request, starting the daemon if needed; a daemon that went away mid-request (an idle
// exit racing with us) gets one more chance.
json call_daemon(const Config& c, const json& request);

}  // namespace cni::dns
