#pragma once
// Starting a per-host daemon on demand (the DNS daemon, tether-agent): the plugin's side
// (connect_or_start) and the daemon's (fork it off so that its starter returns only once it
// serves, hold its pid-file lock for its life, and tell the starter how start-up ended through
// a readiness pipe).
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/control.h"
#include "common/files.h"

namespace cni::daemon {

// How a plugin reaches a daemon of its host and starts one when none listens.
struct Starter {
  std::string who;        // names it in messages: "the DNS daemon", "tether-agent"
  std::string socket;     // its control socket
  std::string state_dir;  // holds start.lock
  std::string program;    // run with `argv` (argv[0] included) to start it; it forks the daemon
  std::vector<std::string> argv;  // off (fork_off below) and exits 0 once that one serves
  std::string log;                // where a failed start-up is explained
  int code = kErrTryAgainLater;   // the CNI code of every failure to start or reach it
  std::chrono::milliseconds wait{5000};
};

// A connection to the daemon, starting it when none listens. Concurrent callers serialize on
// <state_dir>/start.lock, so one of them starts it and the others find it serving. The program
// runs with stdin and stdout on /dev/null (the runtime reads the plugin's stdout until EOF, so
// no daemon may hold it) and no other inherited fd. Normally the daemon serves when the program
// returns; another one (systemd's, still starting) may hold the state dir instead, so the
// socket is polled up to `wait`.
control::Client connect_or_start(const Starter& s);

// Forks. The parent waits on the readiness pipe and returns its exit code: 0 when the daemon
// reported "ok" or "busy" (another one serves), 1 otherwise, with the reason on stderr after
// "<who>: ". The child returns nullopt: a new session, cwd "/", stdin and stdout on /dev/null
// (a runtime reads the plugin's stdout until EOF, so none of it may stay open), stderr
// appended to `log_path` (`state_dir` is created first so the log can live there), and
// `ready_fd` the pipe's write end for report().
std::optional<int> fork_off(const std::string& who, const std::string& state_dir,
                            const std::string& log_path, int& ready_fd);

// Writes `msg` ("ok", "busy" or why start-up failed) to the readiness pipe, if there is one,
// and closes it.
void report(int& ready_fd, const std::string& msg);

// flock on the pid file, then our pid in it: one daemon per state dir. Waits up to `wait` for a
// holder that is exiting; nullopt when another daemon holds it after that.
std::optional<Fd> lock_pidfile(const std::string& path, std::chrono::milliseconds wait);

}  // namespace cni::daemon
