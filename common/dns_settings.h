#pragma once
// The DNS settings a container's result carries, merged field by field from three layers, as
// Docker applies --dns, --dns-search and --dns-option over the host's resolv.conf: the runtime's
// `dns` capability (runtimeConfig.dns) over the network config's `dns` key over the host file
// (host-local's ipam.resolvConf, or whatever the IPAM plugin returned). The fields are
// nameservers, the search list and options; `domain` and `search` are one field (resolv.conf's
// `domain` is a one-entry search list), so a layer that sets either supplies both.
#include <nlohmann/json.hpp>
#include <optional>

#include "common/types.h"

namespace cni {

// runtimeConfig.dns ({"servers","searches","options"}; containerd sends the Go names "Servers",
// "Searches", "Options", matched case-insensitively). Empty when absent. A wrong type is error 7
// naming the key.
Dns runtime_dns(const json& runtime_config);

// `lower` with each field that `higher` sets replacing lower's.
Dns merge_dns(const Dns& lower, const Dns& higher);

// host file < network `dns` < runtime capability, field by field.
Dns effective_dns(const Dns& host_file, const std::optional<Dns>& network, const Dns& runtime);

}  // namespace cni
