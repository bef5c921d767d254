#include "common/daemon.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "common/error.h"

namespace cni::daemon {

namespace {

// Runs the starter program and waits for it.
void run_starter(const Starter& s) {
  std::vector<std::string> argv = s.argv;
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork", errno, s.code);
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::close_range(3, ~0U, 0);
    ::execv(s.program.c_str(), cargv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                        : "signal " + std::to_string(WTERMSIG(status));
    throw Error(s.code, "cannot start " + s.who,
                s.program + " ended with " + how + "; see " + s.log);
  }
}

}  // namespace

control::Client connect_or_start(const Starter& s) {
  if (auto client = control::Client::connect(s.socket, s.who)) return std::move(*client);
  ensure_dir(s.state_dir, 0700);
  FileLock lock = FileLock::exclusive(s.state_dir + "/start.lock");
  if (auto client = control::Client::connect(s.socket, s.who)) return std::move(*client);
  spdlog::info("starting {} for {}", s.who, s.state_dir);
  run_starter(s);
  auto deadline = std::chrono::steady_clock::now() + s.wait;
  for (;;) {
    if (auto client = control::Client::connect(s.socket, s.who)) return std::move(*client);
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(s.code, s.who + " does not answer", s.socket);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::optional<int> fork_off(const std::string& who, const std::string& state_dir,
                            const std::string& log_path, int& ready_fd) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid > 0) {
    ::close(p[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof(buf))) > 0) msg.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    if (msg == "ok" || msg == "busy") return 0;
    const std::string line =
        std::string(who) + ": " + (msg.empty() ? "exited during start-up" : msg) + "\n";
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());  // best effort
    (void)ignored;
    return 1;
  }
  ::close(p[0]);
  ready_fd = p[1];
  ::setsid();
  if (::chdir("/") != 0) {
    // Not fatal: every path a daemon uses is absolute.
  }
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  ::dup2(null.get(), 0);
  ::dup2(null.get(), 1);
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    // The daemon's own ensure_dir reports the error through the pipe.
  }
  Fd logfd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  ::dup2(logfd ? logfd.get() : null.get(), 2);
  return std::nullopt;
}

void report(int& ready_fd, const std::string& msg) {
  if (ready_fd < 0) return;
  ssize_t ignored = ::write(ready_fd, msg.data(), msg.size());
  (void)ignored;
  ::close(ready_fd);
  ready_fd = -1;
}

std::optional<Fd> lock_pidfile(const std::string& path, std::chrono::milliseconds wait) {
  Fd fd = Fd::open(path, O_RDWR | O_CREAT, 0644);
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) throw_errno("cannot lock " + path, errno, kErrIo);
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
    throw_errno("cannot write " + path, errno, kErrIo);
  }
  return fd;
}

}  // namespace cni::daemon
