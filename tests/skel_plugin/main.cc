// tether-test-plugin: the smallest plugin on top of plugin_main, built only for the tests.
// It proves the skel and delegation as a real process:
//  - ADD returns {"interfaces":[{"name":CNI_IFNAME,"sandbox":CNI_NETNS}], ...} plus, when the
//    config has an ipam section, the delegate's IPs (interface index 0); with prevResult and no
//    ipam, it passes prevResult through.
//  - "failWith": {"code":N,"msg":"...","details":"..."} makes every verb fail with that error;
//    inside "ipam" it applies when this plugin runs as its own delegate.
//  - "recordFile": "/path" appends "<VERB> <containerID> <ifname>\n" for every verb that runs.
#include <cstdlib>
#include <fstream>

#include "common/error.h"
#include "common/invoke.h"
#include "common/skel.h"

namespace {

// Set for the child when this plugin delegates to itself, so the child acts as the IPAM.
constexpr const char* kDelegatedEnv = "TETHER_TEST_DELEGATED";

bool delegated() { return std::getenv(kDelegatedEnv) != nullptr; }

void common_steps(const cni::CmdArgs& args) {
  const auto& section = delegated() ? args.conf.ipam : args.conf.raw;
  if (auto path = cni::get_string(section, "recordFile")) {
    std::ofstream(*path, std::ios::app)
        << args.command << " " << args.container_id << " " << args.ifname << "\n";
  }
  if (const auto* fail = cni::get_object(section, "failWith")) {
    throw cni::Error(static_cast<int>(cni::get_int(*fail, "code").value_or(999)),
                     cni::get_string(*fail, "msg").value_or(""),
                     cni::get_string(*fail, "details").value_or(""));
  }
}

bool has_delegate(const cni::CmdArgs& args) {
  if (args.conf.ipam_type().empty() || delegated()) return false;
  ::setenv(kDelegatedEnv, "1", 1);
  return true;
}

cni::Result add(const cni::CmdArgs& args) {
  common_steps(args);
  cni::Result r = args.conf.prev_result.value_or(cni::Result{});
  if (has_delegate(args)) {
    r = cni::delegate_add(args.conf.ipam_type(), args, args.stdin_data);
    r.interfaces = {{args.ifname, "", std::nullopt, args.netns, "", ""}};
    for (auto& ip : r.ips) ip.interface = 0;
  }
  return r;
}

void other(const cni::CmdArgs& args) {
  common_steps(args);
  if (has_delegate(args)) {
    cni::delegate(args.conf.ipam_type(), args.command, args, args.stdin_data);
  }
}

}  // namespace

int main() {
  return cni::plugin_main({add, other, other, other, other}, "tether-test-plugin v" TETHER_VERSION);
}
