#pragma once
// Delegation (SPEC.md §4): run another plugin found in CNI_PATH with the caller's environment
// and the full config on stdin; its stderr is ours; its error JSON comes back unchanged as an
// Error with the same code, msg and details.
#include <string>

#include "common/skel.h"
#include "common/types.h"

namespace cni {

// Absolute path of plugin `type` in the colon-separated `cni_path`; throws when absent.
std::string find_plugin(const std::string& type, const std::string& cni_path);

// Runs `type` with CNI_COMMAND=`command` and the CNI_* variables of `args`, `config` on stdin.
// Returns stdout on success; throws the delegate's error otherwise.
std::string exec_plugin(const std::string& type, const std::string& command, const CmdArgs& args,
                        const std::string& config);

// ADD through the delegate, returning its (IPAM) result.
Result delegate_add(const std::string& type, const CmdArgs& args, const std::string& config);
// DEL, CHECK, STATUS or GC through the delegate.
void delegate(const std::string& type, const std::string& command, const CmdArgs& args,
              const std::string& config);

}  // namespace cni
