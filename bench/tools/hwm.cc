// tether-bench-hwm: the peak RSS of one process alone, not of the children it reaps.
//
// wait4's ru_maxrss (and GNU time's %M) is the largest of the process and every descendant it
// waited for, so bridge's figure would be host-local's whenever the IPAM child is the larger.
// This wrapper runs the program under ptrace with PTRACE_O_TRACEEXIT only (children are not
// traced) and reads VmHWM from /proc/<pid>/status at the exit stop, when the process's memory
// is still mapped: the peak of that process and nothing else.
//
//   tether-bench-hwm --log FILE --label LABEL [--maps FILE] -- PROGRAM ARGS...
//   <dir>/<name> -> tether-bench-hwm, with <dir>/hwm.conf holding "real=<dir>", "log=<file>" and
//     optionally "maps=<file>" lines: runs <real>/<name> with the same argv and environment. A
//     directory of such links is a CNI_PATH under which every plugin of a chain, and the IPAM
//     plugin bridge delegates to, is measured in its real call.
//
// Appends "<label> <CNI_COMMAND or -> <VmHWM> <Rss> <Anonymous> <ru_maxrss>" (KiB) to the log and
// exits as the program did. VmHWM is the kernel's peak, from RSS counters that are per-CPU
// approximations on recent kernels (off by up to a few hundred KiB); Rss and Anonymous come
// from /proc/<pid>/smaps_rollup at the same stop, a page-table walk: exact, but the RSS at exit,
// not the peak. Rss - Anonymous is what the binary and its libraries map from files (text and
// read-only data); Anonymous is heap, stacks and relocated data. ru_maxrss from wait4 includes
// the children the program reaped, for comparison with GNU time's figure. With a maps file, the
// RSS at exit per mapped file ("[anon]" for anonymous memory) is appended to it too, as
// "<label> <verb> <file> <KiB>" lines: what the resident set is made of.
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

// The value of `key` (in KiB) in a /proc file of `pid`, -1 when absent.
long proc_kb(pid_t pid, const char* file, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/" + file);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) return std::strtol(line.c_str() + key.size(), nullptr, 10);
  }
  return -1;
}

// Rss per mapped file of `pid` (smaps), anonymous mappings under "[anon]".
std::map<std::string, long> rss_by_file(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps");
  std::map<std::string, long> out;
  std::string line, current = "[anon]";
  while (std::getline(f, line)) {
    if (line.rfind("Rss:", 0) == 0) {
      out[current] += std::strtol(line.c_str() + 4, nullptr, 10);
    } else if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
               line.find('-') < line.find(' ')) {
      // "start-end perms offset dev inode [path]": a new mapping
      std::istringstream fields(line);
      std::string range, perms, offset, dev, inode, path;
      fields >> range >> perms >> offset >> dev >> inode;
      std::getline(fields >> std::ws, path);
      current = path.empty() || path[0] == '[' ? "[anon]" : path;
    }
  }
  return out;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tether-bench-hwm: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(127);
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int run(const std::string& log, const std::string& maps, const std::string& label,
        const std::string& program, char** argv) {
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) die("PTRACE_TRACEME");
    raise(SIGSTOP);  // lets the parent set the options before the program runs
    execv(program.c_str(), argv);
    die("exec " + program);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status)) die("waiting for the child");
  if (ptrace(PTRACE_SETOPTIONS, pid, nullptr,
             reinterpret_cast<void*>(PTRACE_O_TRACEEXIT | PTRACE_O_TRACEEXEC |
                                     PTRACE_O_EXITKILL)) != 0) {
    die("PTRACE_SETOPTIONS");
  }
  long hwm = -1, rss = -1, anon = -1;
  std::map<std::string, long> by_file;
  int deliver = 0;
  rusage ru{};
  for (;;) {
    if (ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(deliver))) !=
        0) {
      die("PTRACE_CONT");
    }
    deliver = 0;
    if (wait4(pid, &status, 0, &ru) != pid) die("wait4");
    if (WIFEXITED(status) || WIFSIGNALED(status)) break;
    if (!WIFSTOPPED(status)) continue;
    const int event = status >> 16;
    if (event == PTRACE_EVENT_EXIT) {
      hwm = proc_kb(pid, "status", "VmHWM:");
      rss = proc_kb(pid, "smaps_rollup", "Rss:");
      anon = proc_kb(pid, "smaps_rollup", "Anonymous:");
      if (!maps.empty()) by_file = rss_by_file(pid);
    } else if (event == 0 && WSTOPSIG(status) != SIGTRAP) {
      deliver = WSTOPSIG(status);  // an ordinary signal: hand it on
    }
  }
  const char* verb = std::getenv("CNI_COMMAND");
  if (FILE* f = std::fopen(log.c_str(), "a")) {
    std::fprintf(f, "%s %s %ld %ld %ld %ld\n", label.c_str(), verb ? verb : "-", hwm, rss, anon,
                 ru.ru_maxrss);
    std::fclose(f);
  }
  if (!maps.empty()) {
    if (FILE* f = std::fopen(maps.c_str(), "a")) {
      for (const auto& [file, kb] : by_file) {
        std::fprintf(f, "%s %s %s %ld\n", label.c_str(), verb ? verb : "-", file.c_str(), kb);
      }
      std::fclose(f);
    }
  }
  if (WIFSIGNALED(status)) {
    signal(WTERMSIG(status), SIG_DFL);
    raise(WTERMSIG(status));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string self = argv[0];
  if (base_of(self) == "tether-bench-hwm") {
    std::string log, label, maps;
    int i = 1;
    for (; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--log" && i + 1 < argc) {
        log = argv[++i];
      } else if (a == "--label" && i + 1 < argc) {
        label = argv[++i];
      } else if (a == "--maps" && i + 1 < argc) {
        maps = argv[++i];
      } else if (a == "--") {
        ++i;
        break;
      } else {
        break;
      }
    }
    if (log.empty() || i >= argc) {
      std::fprintf(stderr, "usage: tether-bench-hwm --log FILE --label LABEL -- PROGRAM ARGS\n");
      return 2;
    }
    if (label.empty()) label = base_of(argv[i]);
    return run(log, maps, label, argv[i], argv + i);
  }
  // Link mode: the real program and the log come from hwm.conf beside the link.
  std::ifstream conf(dir_of(self) + "/hwm.conf");
  std::string line, real, log, maps;
  while (std::getline(conf, line)) {
    if (line.rfind("real=", 0) == 0) real = line.substr(5);
    if (line.rfind("log=", 0) == 0) log = line.substr(4);
    if (line.rfind("maps=", 0) == 0) maps = line.substr(5);
  }
  if (real.empty() || log.empty()) {
    std::fprintf(stderr, "tether-bench-hwm: %s/hwm.conf needs real= and log=\n",
                 dir_of(self).c_str());
    return 127;
  }
  const std::string program = real + "/" + base_of(self);
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  args[0] = const_cast<char*>(program.c_str());
  return run(log, maps, base_of(self), program, args.data());
}
