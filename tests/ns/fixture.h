#pragma once
// Shared by the namespace tests: every test works inside network namespaces it creates with a
// per-run prefix and removes again, so the host's links and nftables ruleset are never touched.
#include <doctest/doctest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/netns.h"

namespace tnst {

// "tnst<pid>": short enough that prefix + a few characters is a valid interface name.
inline const std::string& prefix() {
  static const std::string p = "tnst" + std::to_string(getpid());
  return p;
}

// An nftables table name of this run: "tnst<pid>_<suffix>".
inline std::string table_name(const std::string& suffix) { return prefix() + "_" + suffix; }

struct ShResult {
  int status;
  std::string out;  // stdout and stderr
};

// Tests may exec tools (plugins may not): this is how we look at the kernel independently.
inline ShResult sh(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen((cmd + " 2>&1").c_str(), "r"), pclose);
  if (!p) {
    throw std::runtime_error("popen failed: " + cmd);
  }
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p.get())) > 0) {
    out.append(buf.data(), n);
  }
  int status = pclose(p.release());
  return {status, out};
}

// A named netns under /run/netns, deleted (with everything in it) on destruction.
class TestNetns {
 public:
  explicit TestNetns(const std::string& suffix) : name_(prefix() + "-" + suffix) {
    ShResult r = sh("ip netns add " + name_);
    if (r.status != 0) {
      throw std::runtime_error("ip netns add " + name_ + ": " + r.out);
    }
    try {
      fd_.emplace(cni::NetnsFd::open(path()));
    } catch (...) {
      sh("ip netns del " + name_);
      throw;
    }
    sh("ip netns exec " + name_ + " ip link set lo up");
  }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;
  ~TestNetns() {
    fd_.reset();
    sh("ip netns del " + name_);
    CHECK(access(path().c_str(), F_OK) != 0);
  }

  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  const cni::NetnsFd& fd() const { return *fd_; }
  ShResult exec(const std::string& cmd) const { return sh("ip netns exec " + name_ + " " + cmd); }

 private:
  std::string name_;
  std::optional<cni::NetnsFd> fd_;
};

// Whether any process holds a descriptor whose /proc/<pid>/fd link reads `target`
// ("socket:[<inode>]", "pipe:[<inode>]").
inline bool fd_target_held(const std::string& target) {
  for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
    std::error_code ec;
    for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fd", ec)) {
      std::error_code rec;
      if (std::filesystem::read_symlink(fd.path(), rec).string() == target) return true;
    }
  }
  return false;
}

// Exited children of this process that nobody has reaped (state Z in /proc/<pid>/stat).
inline int zombie_children() {
  int n = 0;
  for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
    std::string stat;
    if (FILE* f = std::fopen((proc.path() / "stat").c_str(), "r")) {
      char buf[512];
      stat.assign(buf, std::fread(buf, 1, sizeof buf, f));
      std::fclose(f);
    }
    // "<pid> (<comm>) <state> <ppid> ...": comm may hold spaces, so read after its last ')'.
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 4 > stat.size()) continue;
    const char state = stat[paren + 2];
    const long ppid = std::strtol(stat.c_str() + paren + 4, nullptr, 10);
    if (state == 'Z' && ppid == ::getpid()) ++n;
  }
  return n;
}

}  // namespace tnst
