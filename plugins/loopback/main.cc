// loopback: brings a container's `lo` up, a drop-in for the reference plugin that containerd
// (and so every Kubernetes node) runs for every pod beside the pod network. See README.md.
#include "common/skel.h"
#include "plugins/loopback/loopback.h"

int main() {
  namespace lb = cni::loopback;
  cni::Verbs verbs;
  verbs.add = lb::add;
  verbs.del = lb::del;
  verbs.check = lb::check;
  verbs.status = [](const cni::CmdArgs&) {};  // needs nothing to be ready
  verbs.gc = lb::gc;
  // The reference speaks 0.1.0 to 1.0.0; 1.1.0 brings STATUS and GC.
  verbs.versions = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  verbs.print = lb::print;
  return cni::plugin_main(verbs, "loopback v" TETHER_VERSION " (tether)");
}
