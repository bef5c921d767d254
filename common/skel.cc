#include "common/skel.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <iterator>

#include "common/crash_point.h"
#include "common/error.h"
#include "common/files.h"
#include "common/log.h"
#include "common/netns.h"

namespace cni {

Io Io::process() {
  return Io{
      [](const char* name) -> std::optional<std::string> {
        const char* v = std::getenv(name);
        return v ? std::optional<std::string>(v) : std::nullopt;
      },
      [] { return read_all(STDIN_FILENO, "stdin"); },
      [](std::string_view s) { write_all(STDOUT_FILENO, s, "stdout"); },
      [](std::string_view s) { write_all(STDERR_FILENO, s, "stderr"); },
  };
}

json error_json(const std::string& cni_version, int code, const std::string& msg,
                const std::string& details) {
  json j = {{"cniVersion", cni_version}, {"code", code}, {"msg", msg}};
  if (!details.empty()) j["details"] = details;
  return j;
}

bool valid_container_id(std::string_view id) {
  if (id.empty() || !std::isalnum(static_cast<unsigned char>(id[0]))) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

std::optional<std::string> invalid_ifname_reason(std::string_view name) {
  if (name.empty()) return "interface name is empty";
  if (name.size() > 15) return "interface name is too long";
  if (name == "." || name == "..") return "interface name is . or ..";
  // The kernel takes any other bytes, but the name goes into the result JSON and state files.
  if (!valid_utf8(name)) return "interface name is not valid UTF-8";
  for (char c : name) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c))) {
      return "interface name contains / or : or whitespace characters";
    }
  }
  return std::nullopt;
}

namespace {

struct VerbSpec {
  const char* name;
  std::function<void(const CmdArgs&)> Verbs::*fn;  // null for ADD, which returns a result
  bool needs_container;                            // CNI_CONTAINERID and CNI_IFNAME
  bool needs_netns;
  const char* min_version;  // lowest config version that allows the verb
};

constexpr const char* kEnvContainer = "CNI_CONTAINERID";
// Network names and container IDs become directory and file names (NAME_MAX is 255).
constexpr size_t kMaxNameLength = 200;

const VerbSpec kVerbs[] = {
    {"ADD", nullptr, true, true, "0.0.0"},
    {"DEL", &Verbs::del, true, false, "0.0.0"},
    {"CHECK", &Verbs::check, true, true, "0.4.0"},
    {"STATUS", &Verbs::status, false, false, "1.1.0"},
    {"GC", &Verbs::gc, false, false, "1.1.0"},
};

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// The plugin must not be running inside the container's netns (libcni's skel returns
// ErrInvalidNetNS for it); CNI_NETNS_OVERRIDE=1|true disables the check, as in skel. A path that
// is missing or not a netns is left to the verbs: IPAM never enters it, and DEL must succeed
// when the netns is gone.
void check_not_in_target_netns(const Io& io, const std::string& netns) {
  auto override_ns = io.getenv("CNI_NETNS_OVERRIDE");
  if (netns.empty() || (override_ns && (*override_ns == "1" || *override_ns == "true"))) return;
  bool same = false;
  try {
    same = is_current_netns(netns);
  } catch (const Error&) {
    return;
  }
  if (same) {
    throw Error(kErrInvalidNetns, "plugin's netns and netns from CNI_NETNS should not be the same");
  }
}

CmdArgs read_env(const Io& io, const VerbSpec& verb, const std::string& command) {
  CmdArgs a;
  a.command = command;
  std::vector<std::string> missing;
  auto read = [&](const char* name, bool required, std::string& into) {
    auto v = io.getenv(name);
    if (v) into = *v;
    // An unset variable is missing; an empty container ID is "container unknown" (code 3).
    if (required && (!v || (v->empty() && name != kEnvContainer))) missing.push_back(name);
  };
  // GC and STATUS concern the whole network: the per-attachment variables are not theirs.
  if (verb.needs_container) {
    read("CNI_CONTAINERID", true, a.container_id);
    read("CNI_NETNS", verb.needs_netns, a.netns);
    read("CNI_IFNAME", true, a.ifname);
    read("CNI_ARGS", false, a.args_raw);
  }
  read("CNI_PATH", true, a.path);
  if (!missing.empty()) {
    throw Error(kErrInvalidEnv, "required env variables [" + join(missing, ",") + "] missing");
  }
  if (verb.needs_container) {
    if (a.container_id.empty()) throw Error(kErrUnknownContainer, "missing containerID");
    if (!valid_container_id(a.container_id)) {
      throw Error(kErrInvalidEnv, "invalid characters in containerID", a.container_id);
    }
    // Every plugin names a state file after it: longer than a file name can be is refused here
    // rather than half-way through an ADD.
    if (a.container_id.size() > kMaxNameLength) {
      throw Error(kErrInvalidEnv, "containerID is too long",
                  std::to_string(a.container_id.size()) + " bytes, at most " +
                      std::to_string(kMaxNameLength));
    }
    if (auto why = invalid_ifname_reason(a.ifname)) {
      throw Error(kErrInvalidEnv, *why, a.ifname);
    }
    // The path is echoed in the result's "sandbox" and in state files, which are JSON.
    if (!valid_utf8(a.netns)) throw Error(kErrInvalidEnv, "CNI_NETNS is not valid UTF-8", a.netns);
  }
  a.args = CniArgs::parse(a.args_raw);
  return a;
}

const std::vector<std::string>& versions_of(const Verbs& verbs) {
  return verbs.versions.empty() ? supported_versions() : verbs.versions;
}

bool speaks(const Verbs& verbs, const std::string& version) {
  const auto& v = versions_of(verbs);
  return std::find(v.begin(), v.end(), version) != v.end();
}

void check_version(const Verbs& verbs, const NetConf& conf, const VerbSpec& verb) {
  if (!speaks(verbs, conf.cni_version)) {
    throw Error(kErrIncompatibleVersion, "incompatible CNI versions",
                "config is \"" + conf.cni_version + "\", plugin supports [" +
                    join(versions_of(verbs), " ") + "]");
  }
  if (compare_versions(conf.cni_version, verb.min_version) < 0) {
    throw Error(kErrIncompatibleVersion, std::string("config version does not allow ") + verb.name,
                "config is \"" + conf.cni_version + "\", " + verb.name + " needs " +
                    verb.min_version + " or later");
  }
}

// An error about a config version we cannot speak is written in the version we do.
std::string reply_version(const Verbs& verbs, const std::string& version) {
  return speaks(verbs, version) ? version : kCurrentVersion;
}

// Prints the error JSON and never throws: the messages are printable() already (cni::Error) or
// made so here, and if even that fails (no memory) a fixed error still reaches stdout.
void print_error(const Io& io, const std::string& version, int code, std::string_view msg,
                 std::string_view details) noexcept {
  try {
    io.out(error_json(version, code, printable(msg), printable(details))
               .dump(-1, ' ', false, json::error_handler_t::replace) +
           "\n");
    return;
  } catch (...) {
  }
  try {
    io.out(std::string(R"({"cniVersion":")") + kCurrentVersion +
           R"(","code":999,"msg":"internal error"})" + "\n");
  } catch (...) {
  }
}

void log_error(const char* what) noexcept {
  try {
    spdlog::error("{}", printable(what));
  } catch (...) {
  }
}

// The verb CNI_COMMAND names; error 4 when the plugin does not implement it.
const VerbSpec& verb_of(const Verbs& verbs, const std::string& command) {
  const VerbSpec* verb = nullptr;
  for (const auto& v : kVerbs) {
    if (command == v.name) verb = &v;
  }
  bool implemented =
      verb && (verb->fn ? static_cast<bool>(verbs.*(verb->fn)) : static_cast<bool>(verbs.add));
  if (!implemented) {
    throw Error(kErrInvalidEnv, "unknown CNI_COMMAND: " + command);
  }
  return *verb;
}

// One line per call at info level: which attachment, which netns (containerd's second
// teardown sends none) and whether prevResult came, for whoever reads TETHER_LOG_FILE.
void log_call(std::string_view plugin, const std::string& command, const CmdArgs& args) {
  spdlog::info("{} plugin={} network={} container={} ifname={} netns={} prevResult={}", command,
               plugin, args.conf.name, args.container_id, args.ifname,
               args.netns.empty() ? "\"\"" : args.netns, args.conf.prev_result ? "yes" : "no");
}

// Runs the verb; ADD prints its result in the config's version.
void run_verb(const Verbs& verbs, const VerbSpec& verb, const CmdArgs& args, const Io& io) {
  if (verb.fn) {
    (verbs.*(verb.fn))(args);
    return;
  }
  Result result = verbs.add(args);
  if (verbs.print) {
    io.out(verbs.print(result, args));
  } else {
    io.out(
        result.to_json(args.conf.cni_version).dump(-1, ' ', false, json::error_handler_t::replace) +
        "\n");
  }
}

}  // namespace

void check_network_name(const std::string& name) {
  if (!valid_container_id(name)) {
    throw Error(kErrInvalidConfig, "invalid characters found in network name", name);
  }
  if (name.size() > kMaxNameLength) {
    throw Error(kErrInvalidConfig, "network name is too long",
                std::to_string(name.size()) + " bytes, at most " + std::to_string(kMaxNameLength));
  }
}

int plugin_main(const Verbs& verbs, std::string_view about, const Io& io) {
  log::init(std::string(about.substr(0, about.find(' '))));
  arm_crash_points(std::string(about.substr(0, about.find(' '))).c_str());
  return serve(verbs, about, io);
}

int serve(const Verbs& verbs, std::string_view about, const Io& io) {
  std::string version = kCurrentVersion;
  try {
    auto command = io.getenv("CNI_COMMAND").value_or("");
    if (command.empty()) {
      io.err(std::string(about) +
             "\nCNI protocol versions supported: " + join(versions_of(verbs), ", ") + "\n");
      return 0;
    }
    if (command == "VERSION") {
      io.out(
          json{{"cniVersion", kCurrentVersion}, {"supportedVersions", versions_of(verbs)}}.dump() +
          "\n");
      return 0;
    }
    const VerbSpec& verb = verb_of(verbs, command);
    CmdArgs args = read_env(io, verb, command);
    args.stdin_data = io.read_stdin();
    args.conf = NetConf::parse(args.stdin_data);
    version = args.conf.cni_version;
    check_network_name(args.conf.name);
    check_version(verbs, args.conf, verb);
    log_call(about.substr(0, about.find(' ')), command, args);
    check_not_in_target_netns(io, args.netns);
    run_verb(verbs, verb, args, io);
    return 0;
  } catch (const Error& e) {
    log_error(e.what());
    // Spec codes are 1-99, plugin codes 100+; never answer with 0 or a negative code.
    int code = e.code() > 0 ? e.code() : kErrInternal;
    print_error(io, reply_version(verbs, version), code, e.msg(), e.details());
  } catch (const std::exception& e) {
    log_error(e.what());
    print_error(io, reply_version(verbs, version), kErrInternal, e.what(), "");
  } catch (...) {
    print_error(io, reply_version(verbs, version), kErrInternal, "internal error", "");
  }
  return 1;
}

}  // namespace cni
