#include "common/dns_settings.h"

#include "common/netconf.h"

namespace cni {

Dns runtime_dns(const json& runtime_config) {
  Dns d;
  const json* dns = get_object(runtime_config, "dns", "runtimeConfig");
  if (!dns) return d;
  auto list = [dns](const char* key) {
    return get_string_list(*dns, key, "runtimeConfig.dns").value_or(std::vector<std::string>{});
  };
  d.nameservers = list("servers");
  d.search = list("searches");
  d.options = list("options");
  return d;
}

Dns merge_dns(const Dns& lower, const Dns& higher) {
  Dns d = lower;
  if (!higher.nameservers.empty()) d.nameservers = higher.nameservers;
  if (!higher.search.empty() || !higher.domain.empty()) {
    d.search = higher.search;
    d.domain = higher.domain;
  }
  if (!higher.options.empty()) d.options = higher.options;
  return d;
}

Dns effective_dns(const Dns& host_file, const std::optional<Dns>& network, const Dns& runtime) {
  return merge_dns(network ? merge_dns(host_file, *network) : host_file, runtime);
}

}  // namespace cni
