#include "common/agent_client.h"

#include "common/control.h"
#include "common/daemon.h"
#include "common/error.h"
#include "common/files.h"

namespace cni::cluster {

namespace {

constexpr const char* kWho = "tether-agent";

control::Client ensure_agent(const ClusterConfig& c) {
  std::string bin = sibling_executable("tether-agent");
  return daemon::connect_or_start(
      {.who = kWho,
       .socket = c.agent_socket,
       .state_dir = c.state_dir,
       .program = bin,
       .argv = {"tether-agent", "run", "--cluster", c.path, "--daemonize"},
       .log = c.state_dir + "/agent.log",
       .code = kErrTryAgainLater});
}

}  // namespace

bool nudge_agent(const ClusterConfig& c) noexcept {
  try {
    auto client = control::Client::connect(c.agent_socket, kWho);
    if (!client) return false;
    client->call({{"op", "resync"}}, 1000);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

nlohmann::json call_agent(const ClusterConfig& c, const nlohmann::json& request) {
  // An agent request may wait on etcd: a claim reads the blocks and runs a transaction or a
  // few, each within the cluster file's timeoutMs.
  int timeout_ms = 4 * c.timeout_ms + 1000;
  for (int attempt = 0;; ++attempt) {
    control::Client client = ensure_agent(c);
    try {
      return client.call(request, timeout_ms);
    } catch (const control::Gone& e) {
      // The agent went away mid-request (stopped, restarted): one more try with a fresh one.
      if (attempt > 0) throw Error(kErrTryAgainLater, e.msg(), e.details());
    }
  }
}

}  // namespace cni::cluster
