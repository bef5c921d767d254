// portmap: publishes container ports on the host through nftables maps, a drop-in for the
// reference plugin. The verbs are in cmd.cc. See README.md.
#include "common/skel.h"
#include "plugins/portmap/cmd.h"

int main() {
  return cni::plugin_main(
      {
          .add = cni::portmap::cmd_add,
          .del = cni::portmap::cmd_del,
          .check = cni::portmap::cmd_check,
          .status = cni::portmap::cmd_status,
          .gc = cni::portmap::cmd_gc,
      },
      "portmap v" TETHER_VERSION " (tether)");
}
