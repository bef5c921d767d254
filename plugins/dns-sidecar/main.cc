// dns-sidecar: a chained CNI plugin that publishes container names through one shared DNS
// daemon, tether-dns (dns_main.cc), which it starts from its own directory. Run without
// arguments it is the plugin: the table below, the verbs in cmd.cc. With arguments it is
// tether-dns (`dns-sidecar daemon ...`, `dns-sidecar list ...`, as before the two were split).
// See README.md.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/files.h"
#include "common/skel.h"
#include "plugins/dns-sidecar/cmd.h"
#include "plugins/dns-sidecar/daemon.h"

int main(int argc, char** argv) {
  if (argc > 1) {
    std::string daemon = cni::sibling_executable(cni::dns::kDaemonProgram);
    argv[0] = daemon.data();
    ::execv(daemon.c_str(), argv);
    std::fprintf(stderr, "dns-sidecar: cannot run %s: %s\n", daemon.c_str(), std::strerror(errno));
    return 127;
  }
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
