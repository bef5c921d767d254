// host-local: IPAM from a directory of lease files, a drop-in for the reference plugin.
// The verbs are in cmd.cc. See README.md.
#include "common/skel.h"
#include "plugins/ipam-host-local/cmd.h"

int main() { return cni::plugin_main(cni::hostlocal::verbs(), cni::hostlocal::kAbout); }
