#pragma once
// The command-line side of the binary: `dns-sidecar daemon [options]` runs the DNS daemon (in
// the foreground, as under systemd, or daemonized once it serves, as the plugin starts it) and
// `dns-sidecar list` prints what a running daemon serves.
#include <string>

namespace cni::dns {

// The daemon's lock and pid file: held (flock) by the one daemon of a state dir for its life.
std::string pidfile_path(const std::string& state_dir);
// Where a daemonized daemon writes its log unless told otherwise.
std::string default_log_path(const std::string& state_dir);
// How the daemon is named in the control client's messages.
inline constexpr const char* kDaemon = "the DNS daemon";

// argv[1] is "daemon" or "list" (or --help). Returns the process exit code.
int cli_main(int argc, char** argv);

}  // namespace cni::dns
