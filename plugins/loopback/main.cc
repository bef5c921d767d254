// loopback: brings a container's `lo` up, a drop-in for the reference plugin that containerd
// (and so every Kubernetes node) runs for every pod beside the pod network. The verbs are in
// cmd.cc. See README.md.
#include "common/skel.h"
#include "plugins/loopback/cmd.h"

int main() {
  return cni::plugin_main(
      {
          .add = cni::loopback::cmd_add,
          .del = cni::loopback::cmd_del,
          .check = cni::loopback::cmd_check,
          .status = cni::loopback::cmd_status,
          .gc = cni::loopback::cmd_gc,
          // The reference speaks 0.1.0 to 1.0.0; 1.1.0 brings STATUS and GC.
          .versions = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"},
          .print = cni::loopback::print,
      },
      "loopback v" TETHER_VERSION " (tether)");
}
