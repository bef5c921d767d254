#include "tests/etcd/etcd_server.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/etcd.h"

namespace tetcd {

namespace {

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

void must(const std::string& cmd) {
  if (run(cmd) != 0) throw std::runtime_error("failed: " + cmd);
}

}  // namespace

EtcdServer::EtcdServer(std::string name)
    : name_(std::move(name)), netns_(name_ + "-etcd"), data_dir_("/tmp/" + name_ + "-etcd") {
  must("ip netns add " + netns_);
  try {
    // The server's address lives on the namespace's own loopback: reachable from there only.
    must("ip -n " + netns_ + " link set lo up");
    must("ip -n " + netns_ + " addr add " + address_ + "/32 dev lo");
    saved_netns_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = ::open(("/run/netns/" + netns_).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) throw std::runtime_error("setns " + netns_);
    ::close(fd);
    start();
  } catch (...) {
    if (pid_ > 0) kill();
    if (saved_netns_ >= 0) ::setns(saved_netns_, CLONE_NEWNET);
    run("ip netns del " + netns_);
    run("rm -rf " + data_dir_ + " " + data_dir_ + ".log");
    throw;
  }
}

EtcdServer::~EtcdServer() {
  kill();
  if (saved_netns_ >= 0) {
    ::setns(saved_netns_, CLONE_NEWNET);
    ::close(saved_netns_);
  }
  run("ip netns del " + netns_);
  run("rm -rf " + data_dir_ + " " + data_dir_ + ".log");
  struct stat st {};
  if (::stat(("/run/netns/" + netns_).c_str(), &st) == 0 || ::stat(data_dir_.c_str(), &st) == 0) {
    std::fprintf(stderr, "etcd fixture: %s or %s is left\n", netns_.c_str(), data_dir_.c_str());
    std::abort();
  }
}

std::string EtcdServer::url() const { return "http://" + address_ + ":" + std::to_string(port_); }

void EtcdServer::start() {
  if (pid_ > 0) return;
  std::string client = url();
  std::string peer = "http://" + address_ + ":" + std::to_string(port_ + 1);
  std::vector<std::string> args = {"etcd",
                                   "--name=t",
                                   "--data-dir=" + data_dir_,
                                   "--listen-client-urls=" + client,
                                   "--advertise-client-urls=" + client,
                                   "--listen-peer-urls=" + peer,
                                   "--initial-advertise-peer-urls=" + peer,
                                   "--initial-cluster=t=" + peer,
                                   "--log-level=error"};
  std::string log = data_dir_ + ".log";
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    // The child inherits this thread's namespace: etcd listens inside it.
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp("etcd", argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  cni::etcd::Options o;
  o.endpoints = {client};
  o.timeout_ms = 300;
  cni::etcd::Client c(o);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      c.get("/health-probe");
      return;
    } catch (const cni::Error&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  kill();
  throw std::runtime_error("etcd did not start; see " + log);
}

void EtcdServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace tetcd
