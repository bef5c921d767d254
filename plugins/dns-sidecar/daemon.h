#pragma once
// The DNS daemon's executable, tether-dns, installed beside the plugin: `tether-dns daemon
// [options]` runs the daemon (in the foreground, as under systemd, or daemonized once it serves,
// as the plugin starts it) and `tether-dns list` prints what a running daemon serves. The plugin
// (`dns-sidecar`) carries none of the daemon's code, ldns or libcrypto, so that a CNI call maps
// and starts only what it runs; `dns-sidecar daemon|list ...` still works, by exec'ing it.
#include <string>

namespace cni::dns {

// The daemon's lock and pid file: held (flock) by the one daemon of a state dir for its life.
inline std::string pidfile_path(const std::string& state_dir) { return state_dir + "/daemon.pid"; }
// Where a daemonized daemon writes its log unless told otherwise.
inline std::string default_log_path(const std::string& state_dir) {
  return state_dir + "/daemon.log";
}
// How the daemon is named in the control client's messages.
inline constexpr const char* kDaemon = "the DNS daemon";
// The daemon's executable, beside the plugin's (sibling_executable).
inline constexpr const char* kDaemonProgram = "tether-dns";

// tether-dns's main (tether-dns-sidecar-lib): argv[1] is "daemon" or "list" (or --help).
// Returns the process exit code.
int cli_main(int argc, char** argv);

}  // namespace cni::dns
