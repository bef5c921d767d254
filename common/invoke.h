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

// A delegate this binary carries (bridge: host-local, linked in from the same build). When the
// file that CNI_PATH names for `type` is that plugin's binary of this very build (its GNU build
// ID is `build_id`, common/build_id.h), exec_plugin runs `verbs` in this process through
// serve(), with the environment and stdin the child would have had, and takes what it prints
// as the child's stdout: the same code on the same input, without a process start (1–2 ms
// here). Any other file of that name, a wrapper script or another build, is exec'd as before.
// An empty `build_id` carries nothing. Call before any thread starts.
void carry_delegate(const std::string& type, const Verbs& verbs, std::string about,
                    std::string build_id);

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
