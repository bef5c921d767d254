#pragma once
// plugin_main(): the whole CNI execution protocol in one place — environment, stdin, version
// negotiation, dispatch to a plugin's verbs, the result or error JSON on stdout, the exit code.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/netconf.h"
#include "common/types.h"

namespace cni {

struct CmdArgs {
  std::string command;
  std::string container_id;
  std::string netns;  // may be empty for DEL
  std::string ifname;
  std::string path;      // CNI_PATH
  std::string args_raw;  // CNI_ARGS as given
  CniArgs args;
  std::string stdin_data;
  NetConf conf;
};

// A plugin's verbs. ADD returns the result to print; the others print nothing on success.
// A verb left empty answers with error 4 ("unsupported CNI_COMMAND").
struct Verbs {
  std::function<Result(const CmdArgs&)> add;
  std::function<void(const CmdArgs&)> del;
  std::function<void(const CmdArgs&)> check;
  std::function<void(const CmdArgs&)> status;
  std::function<void(const CmdArgs&)> gc;
  // The config versions the plugin accepts, in the order VERSION reports them; empty:
  // supported_versions(). A plugin that also speaks older versions (loopback: 0.1.0, 0.2.0)
  // lists them all.
  std::vector<std::string> versions{};
  // ADD's stdout for a result; empty: the compact JSON of result.to_json(cniVersion) and a
  // newline. For a plugin whose output must be byte for byte the reference's.
  std::function<std::string(const Result&, const CmdArgs&)> print{};
};

// Where plugin_main reads and writes; process() is the real process, tests inject their own.
struct Io {
  std::function<std::optional<std::string>(const char*)> getenv;
  std::function<std::string()> read_stdin;
  std::function<void(std::string_view)> out;  // stdout: the result or error JSON
  std::function<void(std::string_view)> err;  // stderr
  // The process's environment and fds 0-2, by read(2)/write(2): no iostreams (common/files.h).
  static Io process();
};

// Returns the process exit code: 0 on success, 1 after printing the error JSON.
int plugin_main(const Verbs& verbs, std::string_view about, const Io& io = Io::process());

// One call of the protocol, without plugin_main's set-up of the process (its logger, its crash
// points): a delegate run in another plugin's process (common/invoke.h).
int serve(const Verbs& verbs, std::string_view about, const Io& io);

// The error JSON as plugin_main prints it.
json error_json(const std::string& cni_version, int code, const std::string& msg,
                const std::string& details);

// Spec validation rules, shared with plugins that check names of their own.
bool valid_container_id(std::string_view id);  // also network names
// Error 7 unless `name` is a valid network name (the container ID rule, at most 200 bytes): what
// CNI_* and stdin give is checked by plugin_main; a daemon checks what its socket is sent.
void check_network_name(const std::string& name);
std::optional<std::string> invalid_ifname_reason(std::string_view name);

}  // namespace cni
