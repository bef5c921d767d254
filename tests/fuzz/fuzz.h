#pragma once
// Shared by the fuzz targets of tests/fuzz: each target is one LLVMFuzzerTestOneInput, built
// both for libFuzzer (TETHER_FUZZ=ON, clang) and into tether_fuzz_replay, which replays the
// committed corpora in every test build (the macro renames the entry point there).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace tether_fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Logging off: the targets run millions of times, and what they log is not what they check.
inline void quiet() {
  static const bool done = [] {
    // plugin_main installs its logger again from the environment (common/log.cc).
    ::setenv("TETHER_LOG_LEVEL", "off", 1);
    ::unsetenv("TETHER_LOG_FILE");
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)done;
}

// A property of the code under test does not hold: a crash, so that libFuzzer keeps the input
// and the replay fails.
[[noreturn]] inline void violated(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz property violated: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}
inline void require(bool ok, const char* what, std::string_view detail = {}) {
  if (!ok) violated(what, detail);
}

// Several inputs in one: the parts are separated by a line "%%" ("a\n%%\nb" is {"a", "b"}).
// Readable in a corpus file and easy for a mutator to keep or break.
inline std::vector<std::string_view> split_parts(std::string_view text) {
  std::vector<std::string_view> parts;
  constexpr std::string_view kSep = "\n%%\n";
  for (;;) {
    auto at = text.find(kSep);
    if (at == std::string_view::npos) break;
    parts.push_back(text.substr(0, at));
    text.remove_prefix(at + kSep.size());
  }
  parts.push_back(text);
  return parts;
}

// Splits off the first line: "<CNI_ARGS>\n<stdin>" in the config targets.
inline std::pair<std::string_view, std::string_view> first_line(std::string_view text) {
  auto nl = text.find('\n');
  if (nl == std::string_view::npos) return {text, {}};
  return {text.substr(0, nl), text.substr(nl + 1)};
}

// A directory of the process's own under /tmp (TMPDIR), removed at exit; the targets that read
// files write the input there and clear it after every run.
class Scratch {
 public:
  Scratch() {
    std::string tmpl = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    tmpl += "/tether-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) violated("mkdtemp", tmpl);
    path_ = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return path_; }
  // Empties the directory, keeping it.
  void clear() const {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(path_, ec)) {
      std::filesystem::remove_all(e.path(), ec);
    }
  }

 private:
  std::string path_;
};

}  // namespace tether_fuzz
