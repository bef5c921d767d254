#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>

namespace cni::log {

namespace {

std::string g_program = "tether";

void install(const std::string& file, const std::string& level) {
  std::vector<spdlog::sink_ptr> sinks;
  // Thread-safe sinks: bridge DEL runs its IPAM delegate on a second thread.
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file));
    } catch (const spdlog::spdlog_ex&) {
      // An unwritable log file must not fail the CNI call; stderr still gets everything.
    }
  }
  auto logger = std::make_shared<spdlog::logger>(g_program, sinks.begin(), sinks.end());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%P] %l: %v");
  logger->set_level(level.empty() ? spdlog::level::warn : spdlog::level::from_str(level));
  spdlog::set_default_logger(std::move(logger));
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

void init(const std::string& program) {
  g_program = program;
  install(env("TETHER_LOG_FILE"), env("TETHER_LOG_LEVEL"));
}

void configure(const std::string& file, const std::string& level) {
  install(file.empty() ? env("TETHER_LOG_FILE") : file,
          level.empty() ? env("TETHER_LOG_LEVEL") : level);
}

}  // namespace cni::log
