// tether-agent: the per-host cluster daemon (agent.h). Started on demand by the first plugin
// that needs it (common/agent_client.h) or by systemd (packaging/tether-agent.service).
//   tether-agent run     --cluster FILE [--daemonize] [--log-file F] [--log-level L] [--resync S]
//   tether-agent status  --cluster FILE [--json]
//   tether-agent release --cluster FILE RANGE BLOCK
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <iostream>

#include "common/control.h"
#include "common/daemon.h"
#include "common/error.h"
#include "common/log.h"
#include "plugins/agent/agent.h"
#include "plugins/agent/overlay_sink.h"

namespace {

using namespace cni;
using json = nlohmann::json;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop = true; }

struct RunArgs {
  std::string cluster = cluster::kDefaultFile;
  bool daemonize = false;
  std::string log_file;
  std::string log_level = "info";
  int resync_s = 30;
};

int run_agent(RunArgs a) {
  int ready_fd = -1;
  cluster::ClusterConfig c;
  try {
    c = cluster::ClusterConfig::load(a.cluster);
  } catch (const Error& e) {
    std::cerr << "tether-agent: " << e.what() << "\n";
    return 1;
  }
  if (a.daemonize) {
    std::string log = a.log_file.empty() ? c.state_dir + "/agent.log" : a.log_file;
    if (auto parent_exit = daemon::fork_off("tether-agent", c.state_dir, log, ready_fd)) {
      return *parent_exit;
    }
    a.log_file.clear();  // stderr is the log file now
  }
  log::init("tether-agent");
  log::configure(a.log_file, a.log_level);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  try {
    ensure_dir(c.state_dir, 0700);
    // One agent per state dir; a daemonizing agent waits a little for one that is exiting.
    std::optional<Fd> lock = daemon::lock_pidfile(
        c.state_dir + "/agent.pid",
        a.daemonize ? std::chrono::seconds(3) : std::chrono::milliseconds::zero());
    if (!lock) {
      if (a.daemonize) {
        daemon::report(ready_fd, "busy");
        return 0;
      }
      throw Error(kErrIo, "another tether-agent is running", c.state_dir + "/agent.pid");
    }
    agent::AgentOptions o;
    o.resync_s = a.resync_s;
    agent::Agent ag(c, o);
    // PeerSinks (peers.h) are added here, before start().
    ag.add_sink(std::make_unique<agent::OverlaySink>(c.overlay_dir));
    ag.start();
    spdlog::info("node {} ({}) serving {}", c.node, c.address.str(), c.agent_socket);
    daemon::report(ready_fd, "ok");
    ag.run(g_stop);
    if (::ftruncate(lock->get(), 0) != 0) spdlog::warn("cannot truncate the pid file");
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    daemon::report(ready_fd, e.what());
    return 1;
  }
}

json ask(const std::string& cluster_file, const json& req) {
  cluster::ClusterConfig c = cluster::ClusterConfig::load(cluster_file);
  auto client = control::Client::connect(c.agent_socket, agent::kWho);
  if (!client) throw Error(kErrNotAvailable, "tether-agent is not running", c.agent_socket);
  return client->call(req);
}

// `tether-agent status`: the agent's reply, as JSON or as lines.
int print_status(const json& s, bool as_json) {
  if (as_json) {
    std::cout << s.dump(2) << "\n";
    return 0;
  }
  std::cout << "node " << s["node"].get<std::string>() << "  address "
            << s["address"].get<std::string>() << "  etcd "
            << (s["connected"].get<bool>() ? "connected" : "UNREACHABLE") << "\n";
  for (const auto& cl : s["claims"]) {
    std::cout << "  block " << cl["block"].get<std::string>() << " of "
              << cl["range"].get<std::string>() << "\n";
  }
  for (const auto& p : s["peers"]) {
    std::cout << "peer " << p["node"].get<std::string>() << "  " << p["address"].get<std::string>()
              << "  " << p["vtepMac"].get<std::string>();
    for (const auto& b : p["blocks"]) std::cout << "  " << b.get<std::string>();
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tether-agent: publishes this host in etcd, claims address blocks, watches peers"};
  app.require_subcommand(1);
  RunArgs r;
  auto* run = app.add_subcommand("run", "serve (the default under systemd)");
  run->add_option("--cluster", r.cluster, "cluster file")->capture_default_str();
  run->add_flag("--daemonize", r.daemonize, "fork into the background once serving");
  run->add_option("--log-file", r.log_file, "log file [stderr; <stateDir>/agent.log daemonized]");
  run->add_option("--log-level", r.log_level, "trace|debug|info|warn|error")->capture_default_str();
  run->add_option("--resync", r.resync_s, "seconds between full peer syncs (0: only on change)")
      ->capture_default_str();

  std::string cluster_file = cluster::kDefaultFile;
  bool as_json = false;
  auto* status = app.add_subcommand("status", "this node, its blocks and the peers it sees");
  status->add_option("--cluster", cluster_file, "cluster file")->capture_default_str();
  status->add_flag("--json", as_json, "the agent's reply as JSON");

  std::string range, block;
  auto* release = app.add_subcommand("release", "give an address block back to the cluster");
  release->add_option("--cluster", cluster_file, "cluster file")->capture_default_str();
  release->add_option("range", range, "the cluster range, e.g. 10.32.0.0/12")->required();
  release->add_option("block", block, "the block, e.g. 10.32.3.0/24")->required();
  CLI11_PARSE(app, argc, argv);

  try {
    if (*run) return run_agent(r);
    if (*status) return print_status(ask(cluster_file, {{"op", "status"}}), as_json);
    if (*release) {
      json s = ask(cluster_file, {{"op", "release"}, {"range", range}, {"block", block}});
      std::cout << (s.value("released", false) ? "released" : "not held") << " " << block
                << (s.value("pending", false) ? " (etcd is away: done when it is back)" : "")
                << "\n";
      return s.value("released", false) ? 0 : 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "tether-agent: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
