// host-local: IPAM from a directory of lease files, a drop-in for the reference plugin.
// The verbs are in cmd.cc. See README.md.
#include "common/skel.h"
#include "plugins/ipam-host-local/cmd.h"

int main() {
  return cni::plugin_main(
      {
          .add = cni::hostlocal::cmd_add,
          .del = cni::hostlocal::cmd_del,
          .check = cni::hostlocal::cmd_check,
          .status = cni::hostlocal::cmd_status,
          .gc = cni::hostlocal::cmd_gc,
      },
      "host-local v" TETHER_VERSION " (tether)");
}
