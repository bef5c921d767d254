#include "plugins/dns-sidecar/daemon.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <optional>

#include "common/control.h"
#include "common/daemon.h"
#include "common/error.h"
#include "common/files.h"
#include "common/log.h"
#include "plugins/dns-sidecar/config.h"
#include "plugins/dns-sidecar/server.h"

namespace cni::dns {

namespace {

// How long a daemon started by the plugin waits for the lock held by one that is exiting.
constexpr auto kLockWait = std::chrono::seconds(5);

struct DaemonArgs {
  ServerOptions server;
  bool daemonize = false;
  std::string log_file;
  std::string log_level = "info";
};

int run_daemon(DaemonArgs a) {
  if (a.server.socket.empty()) a.server.socket = a.server.state_dir + "/" + kSocketName;
  int ready_fd = -1;
  if (a.daemonize) {
    std::string log = a.log_file.empty() ? default_log_path(a.server.state_dir) : a.log_file;
    if (auto parent_exit =
            daemon::fork_off("tether-dns daemon", a.server.state_dir, log, ready_fd)) {
      return *parent_exit;
    }
    a.log_file.clear();  // stderr is the log file now
  }
  log::init("dns-sidecar");
  log::configure(a.log_file, a.log_level);
  try {
    ensure_dir(a.server.state_dir, 0700);
    std::optional<Fd> lock =
        daemon::lock_pidfile(pidfile_path(a.server.state_dir),
                             a.daemonize ? kLockWait : std::chrono::milliseconds::zero());
    if (!lock) {
      if (a.daemonize) {
        spdlog::info("another daemon serves {}", a.server.state_dir);
        daemon::report(ready_fd, "busy");
        return 0;
      }
      throw Error(kErrIo, "another dns-sidecar daemon is running",
                  pidfile_path(a.server.state_dir));
    }
    Server server(a.server);
    server.start();
    daemon::report(ready_fd, "ok");
    server.run();
    // A stale pid must not point a test or an admin at an unrelated process. The file itself
    // stays: it is the lock, and unlinking it would let two daemons lock two different files.
    if (::ftruncate(lock->get(), 0) != 0) spdlog::warn("cannot truncate the pid file");
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    daemon::report(ready_fd, e.what());
    return 1;
  }
}

void print_table(const json& reply) {
  for (const auto& net : reply["networks"]) {
    std::cout << "network " << net["name"].get<std::string>() << "  domain "
              << net["domain"].get<std::string>()
              << (net["internal"].get<bool>() ? "  internal" : "") << "  listen";
    for (const auto& l : net["listen"]) std::cout << " " << l.get<std::string>();
    std::cout << "\n";
    // One line per record with the node that published it, as `weave status dns` shows.
    for (const auto& c : net["containers"]) {
      std::cout << "  " << c.value("node", "") << (c.value("local", true) ? " " : " (remote) ")
                << c["containerID"].get<std::string>().substr(0, 12) << " "
                << c["ifname"].get<std::string>() << " ";
      // A literal, not a std::string: g++ 12 at -O3 warns (-Wstringop-overflow) about the copy
      // in basic_string::_M_replace that `sep = ","` inlines, and no copy is needed at all.
      const char* sep = "";
      for (const auto& a : c["addresses"]) {
        std::cout << sep << a.get<std::string>();
        sep = ",";
      }
      std::cout << "  ";
      sep = "";
      for (const auto& n : c["names"]) {
        std::cout << sep << n.get<std::string>();
        sep = ",";
      }
      for (const auto& n : c["containerAliases"]) std::cout << " (" << n.get<std::string>() << ")";
      std::cout << "\n";
    }
  }
}

}  // namespace

int cli_main(int argc, char** argv) {
  CLI::App app{"tether-dns: the DNS daemon dns-sidecar registers container names with"};
  app.require_subcommand(1);

  DaemonArgs d;
  d.server.state_dir = kDefaultStateDir;
  auto* daemon = app.add_subcommand("daemon", "run the DNS daemon");
  daemon->add_option("--state-dir", d.server.state_dir, "registrations, lock and socket")
      ->capture_default_str();
  daemon->add_option("--socket", d.server.socket, "control socket [<state-dir>/control.sock]");
  daemon->add_option("--port", d.server.port, "DNS port for networks that set none")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  daemon->add_option("--resolv-conf", d.server.resolv_conf, "host upstream servers (watched)")
      ->capture_default_str();
  daemon
      ->add_option("--idle-exit", d.server.idle_exit_s,
                   "exit after this many seconds without registrations (0: never)")
      ->capture_default_str();
  daemon->add_option("--cluster", d.server.cluster_file,
                     "cluster file: publish names to etcd and serve every node's");
  daemon->add_option("--lease-ttl", d.server.lease_ttl,
                     "seconds a dead daemon's names stay published [the file's leaseTTL]");
  daemon->add_flag("--daemonize", d.daemonize, "fork into the background once serving");
  daemon->add_option("--log-file", d.log_file,
                     "log file [stderr; <state-dir>/daemon.log when daemonized]");
  daemon->add_option("--log-level", d.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();

  std::string state_dir = kDefaultStateDir;
  std::string socket;
  bool as_json = false;
  auto* list =
      app.add_subcommand("list", "show every record a running daemon serves, with its node");
  list->add_option("--state-dir", state_dir, "the daemon's state dir")->capture_default_str();
  list->add_option("--socket", socket, "control socket [<state-dir>/control.sock]");
  list->add_flag("--json", as_json, "print the daemon's JSON");

  CLI11_PARSE(app, argc, argv);
  if (daemon->parsed()) return run_daemon(std::move(d));

  try {
    if (socket.empty()) socket = state_dir + "/" + kSocketName;
    auto client = control::Client::connect(socket, kDaemon);
    if (!client) {
      std::cerr << "dns-sidecar: no daemon listens on " << socket << "\n";
      return 1;
    }
    json reply = client->call({{"op", "list"}});
    if (as_json) {
      std::cout << reply.dump(2) << "\n";
    } else {
      print_table(reply);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "dns-sidecar: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace cni::dns
