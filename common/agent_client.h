#pragma once
// A plugin's way to this host's tether-agent (plugins/agent/agent.h lists the ops): one request
// over the control socket named by the cluster file, starting the agent when none listens --
// `tether-agent run --daemonize` from the directory of the calling plugin's own binary, the way
// dns-sidecar starts its daemon. Concurrent callers serialize the start on
// <stateDir>/start.lock, so one of them starts it and the others find it serving.
#include <nlohmann/json.hpp>

#include "common/cluster.h"

namespace cni::cluster {

// Throws the agent's error (its code: 50 no free block, 11 etcd unreachable, 7 bad request),
// or code 11 when the agent cannot be started or does not answer: it is a local daemon, and
// "try again later" is what the runtime can do about it.
nlohmann::json call_agent(const ClusterConfig& c, const nlohmann::json& request);

// Asks the agent, when one listens, to call its sinks again at once ({"op": "resync"}): a
// plugin that made a VXLAN device or changed an overlay spec gets the device's peers without
// waiting for a peer change or the resync interval. Never starts an agent, never waits on etcd
// and never throws: false when no agent took the request (the plugin's work stands either way).
bool nudge_agent(const ClusterConfig& c) noexcept;

}  // namespace cni::cluster
