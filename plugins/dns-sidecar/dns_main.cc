// tether-dns: the DNS daemon that dns-sidecar registers container names with
// (`tether-dns daemon`), and its `list` client. See daemon.h and README.md.
#include "plugins/dns-sidecar/daemon.h"

int main(int argc, char** argv) { return cni::dns::cli_main(argc, argv); }
