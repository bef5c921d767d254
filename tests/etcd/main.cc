// tether_etcd_test: the etcd client against a real etcd (tests/etcd/etcd_server.h).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "common/error.h"
#include "tests/etcd/etcd_server.h"

namespace tetcd {
namespace {
EtcdServer* g_server = nullptr;
}
EtcdServer& server() { return *g_server; }
}  // namespace tetcd

int main(int argc, char** argv) {
  std::unique_ptr<tetcd::EtcdServer> s;
  try {
    s = std::make_unique<tetcd::EtcdServer>("tetc" + std::to_string(getpid()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot start etcd: %s\n", e.what());
    return 2;
  }
  tetcd::g_server = s.get();
  doctest::Context ctx(argc, argv);
  int rc = ctx.run();
  tetcd::g_server = nullptr;
  s.reset();  // kills etcd, deletes the namespace and the data dir, checks they are gone
  return rc;
}
