// bridge: a drop-in for the reference CNI bridge plugin, with Docker's ICC, masquerade,
// internal and isolate switches in tether's own nftables table.
#include "common/invoke.h"
#include "common/skel.h"
#include "plugins/bridge/cmd.h"
#include "plugins/ipam-host-local/cmd.h"

// The GNU build ID of this build's host-local (generated: cmake/build_id_source.cmake).
extern const char kHostLocalBuildId[];

int main() {
  // host-local, when CNI_PATH's is this build's own, runs in this process (common/invoke.h).
  cni::carry_delegate("host-local", cni::hostlocal::verbs(), cni::hostlocal::kAbout,
                      kHostLocalBuildId);
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
