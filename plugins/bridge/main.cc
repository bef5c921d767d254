// bridge: a drop-in for the reference CNI bridge plugin, with Docker's ICC, masquerade,
// internal and isolate switches in tether's own nftables table.
#include "common/skel.h"
#include "plugins/bridge/cmd.h"

int main() {
  return cni::plugin_main(
      {
          .add = cni::bridge::cmd_add,
          .del = cni::bridge::cmd_del,
          .check = cni::bridge::cmd_check,
          .status = cni::bridge::cmd_status,
          .gc = cni::bridge::cmd_gc,
      },
      "bridge v" TETHER_VERSION " (tether)");
}
