// dns-sidecar: a chained CNI plugin that publishes container names through one shared DNS
// daemon, and that daemon (`dns-sidecar daemon`). Run without arguments it is the plugin: the
// table below, the verbs in cmd.cc; with a subcommand it is the daemon or its `list` client.
// See README.md.
#include "common/skel.h"
#include "plugins/dns-sidecar/cmd.h"
#include "plugins/dns-sidecar/daemon.h"

int main(int argc, char** argv) {
  if (argc > 1) return cni::dns::cli_main(argc, argv);
  return cni::plugin_main(
      {
          .add = cni::dns::cmd_add,
          .del = cni::dns::cmd_del,
          .check = cni::dns::cmd_check,
          .status = cni::dns::cmd_status,
          .gc = cni::dns::cmd_gc,
      },
      "dns-sidecar v" TETHER_VERSION " (tether)");
}
