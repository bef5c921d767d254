// tether_fuzz_replay: runs every fuzz target of tests/fuzz on the files given, without
// libFuzzer, so that the committed corpora and the crash regressions replay in any build
// (scripts/test.sh runs it in the ASan+UBSan build).
//
//   tether_fuzz_replay [--require-all] ROOT...        ROOT/<target>/* for every target dir
//   tether_fuzz_replay --target NAME PATH...          PATH: a file or a directory of inputs
//
// A crash aborts (that is the failure); a directory that names no target, or with
// --require-all a target that has no input under any ROOT, counts as a failure. Ends with
// "N passed, M failed", N the targets whose inputs all ran.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "tests/fuzz/targets.h"

namespace fs = std::filesystem;

// Defined by the sanitizer runtimes (g++ and clang); absent in a plain build.
extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace {

// The input being run, named on stderr when it crashes (and only then: the replay is quiet).
char g_current[4096];

void say_current() {
  static const char kWhat[] = "fuzz replay: crashed on ";
  if (::write(2, kWhat, sizeof(kWhat) - 1) < 0) return;
  if (::write(2, g_current, std::strlen(g_current)) < 0) return;
  if (::write(2, "\n", 1) < 0) return;
}

extern "C" void on_fatal_signal(int sig) {
  say_current();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

const tether_fuzz::Target* find_target(const std::string& name) {
  for (const auto& t : tether_fuzz::targets()) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

std::vector<fs::path> files_under(const fs::path& p) {
  std::vector<fs::path> out;
  if (fs::is_directory(p)) {
    for (const auto& e : fs::recursive_directory_iterator(p)) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
  } else if (fs::is_regular_file(p)) {
    out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void run_one(const tether_fuzz::Target& t, const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), {});
  // libFuzzer hands over a buffer of exactly the input's size: so does the replay, so that
  // ASan sees a read past the end.
  auto* buf = new uint8_t[data.size()];
  if (!data.empty()) std::memcpy(buf, data.data(), data.size());
  std::snprintf(g_current, sizeof(g_current), "%s %s", t.name, file.c_str());
  t.fn(buf, data.size());
  delete[] buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool require_all = false;
  std::string only;
  std::vector<std::string> paths;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--require-all") {
      require_all = true;
    } else if (args[i] == "--target" && i + 1 < args.size()) {
      only = args[++i];
    } else if (args[i] == "--list") {
      for (const auto& t : tether_fuzz::targets()) std::printf("%s\n", t.name);
      return 0;
    } else {
      paths.push_back(args[i]);
    }
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: %s [--require-all] ROOT... | --target NAME PATH... | --list\n",
                 argv[0]);
    return 2;
  }
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(say_current);
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_fatal_signal);
  std::map<std::string, size_t> counts;
  int failed = 0;
  if (!only.empty()) {
    const auto* t = find_target(only);
    if (!t) {
      std::fprintf(stderr, "no fuzz target %s\n", only.c_str());
      return 2;
    }
    for (const auto& p : paths) {
      for (const auto& f : files_under(p)) {
        run_one(*t, f);
        ++counts[t->name];
      }
    }
  } else {
    for (const auto& root : paths) {
      if (!fs::is_directory(root)) {
        std::printf("%s: not a directory\n", root.c_str());
        ++failed;
        continue;
      }
      std::vector<fs::path> dirs;
      for (const auto& e : fs::directory_iterator(root)) {
        if (e.is_directory()) dirs.push_back(e.path());
      }
      std::sort(dirs.begin(), dirs.end());
      for (const auto& d : dirs) {
        const auto* t = find_target(d.filename().string());
        if (!t) {
          std::printf("%s: names no fuzz target\n", d.c_str());
          ++failed;
          continue;
        }
        for (const auto& f : files_under(d)) {
          run_one(*t, f);
          ++counts[t->name];
        }
      }
    }
    if (require_all) {
      for (const auto& t : tether_fuzz::targets()) {
        if (!counts.count(t.name)) {
          std::printf("%s: no input (every target needs a corpus)\n", t.name);
          ++failed;
        }
      }
    }
  }
  size_t inputs = 0;
  for (const auto& [name, n] : counts) {
    std::printf("%-20s %zu inputs replayed\n", name.c_str(), n);
    inputs += n;
  }
  std::printf("%zu inputs\n", inputs);
  std::printf("%zu passed, %d failed\n", counts.size(), failed);
  return failed ? 1 : 0;
}
