#include "common/invoke.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "common/build_id.h"
#include "common/crash_point.h"
#include "common/error.h"
#include "common/files.h"

extern char** environ;

namespace cni {

std::string find_plugin(const std::string& type, const std::string& cni_path) {
  if (type.empty() || type.find('/') != std::string::npos) {
    throw_config("invalid plugin type \"" + type + "\"");
  }
  size_t start = 0;
  while (start <= cni_path.size()) {
    size_t end = cni_path.find(':', start);
    if (end == std::string::npos) end = cni_path.size();
    std::string dir = cni_path.substr(start, end - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + type;
      // A directory or FIFO named like the plugin passes access(X_OK) but cannot be run.
      struct stat st {};
      if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          ::access(candidate.c_str(), X_OK) == 0) {
        return candidate;
      }
    }
    start = end + 1;
  }
  throw Error(kErrInternal, "failed to find plugin \"" + type + "\" in path [" + cni_path + "]");
}

namespace {

std::vector<std::string> child_env(const std::string& command, const CmdArgs& args) {
  const std::pair<const char*, const std::string*> cni_vars[] = {
      {"CNI_CONTAINERID", &args.container_id},
      {"CNI_NETNS", &args.netns},
      {"CNI_IFNAME", &args.ifname},
      {"CNI_ARGS", &args.args_raw},
      {"CNI_PATH", &args.path},
  };
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, "CNI_", 4) != 0) env.emplace_back(*e);
  }
  env.push_back("CNI_COMMAND=" + command);
  for (const auto& [name, value] : cni_vars) {
    if (!value->empty()) env.push_back(std::string(name) + "=" + *value);
  }
  return env;
}

struct Carried {
  Verbs verbs;
  std::string about;
  std::string build_id;
};

std::map<std::string, Carried>& carried() {
  static std::map<std::string, Carried> m;
  return m;
}

// The delegate this binary carries for `type`, if the file found at `path` is its binary.
const Carried* carried_as(const std::string& type, const std::string& path) {
  auto it = carried().find(type);
  if (it == carried().end() || gnu_build_id(path) != it->second.build_id) return nullptr;
  return &it->second;
}

// The delegate's verbs in this process, reading `env` and `config` where the child would read
// its environment and stdin; what it prints to stdout is returned in `out`.
int serve_carried(const Carried& c, const std::vector<std::string>& env, const std::string& config,
                  std::string& out) {
  Io io{
      [&env](const char* name) -> std::optional<std::string> {
        const size_t len = std::strlen(name);
        for (const std::string& e : env) {
          if (e.size() > len && e[len] == '=' && e.compare(0, len, name) == 0)
            return e.substr(len + 1);
        }
        return std::nullopt;
      },
      [&config] { return config; },
      [&out](std::string_view s) { out.append(s); },
      [](std::string_view s) { write_all(STDERR_FILENO, s, "stderr"); },
  };
  return serve(c.verbs, c.about, io);
}

// The delegate's stdout when it succeeded; its error JSON as an Error, with the same code, msg
// and details, when it failed (`how`: the failure, for one that printed none).
std::string outcome(const std::string& type, const std::string& command, const std::string& output,
                    bool ok, const std::string& how) {
  if (ok) {
    crash_point("delegate-returned");
    return output;
  }
  json err = parse_bounded(output);
  if (err.is_object() && err.contains("code") && err["code"].is_number_integer()) {
    // The delegate's code is passed on as given, unless it is not a valid one (0 or negative).
    int64_t code = err["code"].get<int64_t>();
    auto text = [&](const char* key) {
      auto it = err.find(key);
      return it != err.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    throw Error(code > 0 && code <= INT32_MAX ? static_cast<int>(code) : kErrInternal, text("msg"),
                text("details"));
  }
  throw Error(kErrInternal, "plugin " + type + " " + command + " failed (" + how + ")", output);
}

struct Pipe {
  Fd read;
  Fd write;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe");
    read = Fd(fds[0]);
    write = Fd(fds[1]);
  }
};

// Feeds `input` to `in` and collects `out` until EOF, without deadlocking on full pipes.
std::string exchange(Fd in, Fd out, const std::string& input) {
  std::string output;
  size_t written = 0;
  ::fcntl(in.get(), F_SETFL, O_NONBLOCK);
  if (input.empty()) in = Fd();
  while (out) {
    pollfd fds[2] = {{out.get(), POLLIN, 0}, {in ? in.get() : -1, POLLOUT, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (fds[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
      ssize_t n = ::write(in.get(), input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) in = Fd();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[8192];
      ssize_t n = ::read(out.get(), buf, sizeof(buf));
      if (n > 0) {
        output.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        out = Fd();
      }
    }
  }
  return output;
}

}  // namespace

std::string exec_plugin(const std::string& type, const std::string& command, const CmdArgs& args,
                        const std::string& config) {
  std::string path = find_plugin(type, args.path);
  std::vector<std::string> env = child_env(command, args);
  if (const Carried* c = carried_as(type, path)) {
    std::string output;
    int rc = serve_carried(*c, env, config, output);
    return outcome(type, command, output, rc == 0, "exit status " + std::to_string(rc));
  }
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string arg0 = path;
  char* argv[] = {arg0.data(), nullptr};

  Pipe stdin_pipe;
  Pipe stdout_pipe;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, stdin_pipe.read.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, stdout_pipe.write.get(), STDOUT_FILENO);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw_errno("failed to run " + path, rc);
  stdin_pipe.read = Fd();
  stdout_pipe.write = Fd();

  // A delegate that exits without reading stdin must not kill us with SIGPIPE.
  struct sigaction ignore {};
  struct sigaction old {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  std::string output = exchange(std::move(stdin_pipe.write), std::move(stdout_pipe.read), config);
  ::sigaction(SIGPIPE, &old, nullptr);

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status));
  return outcome(type, command, output, WIFEXITED(status) && WEXITSTATUS(status) == 0, how);
}

void carry_delegate(const std::string& type, const Verbs& verbs, std::string about,
                    std::string build_id) {
  if (build_id.empty()) return;
  carried()[type] = Carried{verbs, std::move(about), std::move(build_id)};
}

Result delegate_add(const std::string& type, const CmdArgs& args, const std::string& config) {
  std::string out = exec_plugin(type, "ADD", args, config);
  json j = parse_untrusted(out, kErrDecode);
  if (j.is_discarded()) {
    throw Error(kErrDecode, "failed to decode the result of " + type, out);
  }
  return Result::from_json(j);
}

void delegate(const std::string& type, const std::string& command, const CmdArgs& args,
              const std::string& config) {
  exec_plugin(type, command, args, config);
}

}  // namespace cni
