#pragma once
// Logging through spdlog, to stderr and optionally a file; never to stdout, which carries the
// CNI result. Level and file come from TETHER_LOG_LEVEL / TETHER_LOG_FILE (a plugin may override
// them from its config). plugin_main() calls init() before anything else: spdlog's own default
// logger writes to stdout, so nothing may log before it.
#include <spdlog/spdlog.h>

#include <string>

namespace cni::log {

// Installs the default logger for `program`. Safe to call more than once.
void init(const std::string& program);
// Re-targets logging, e.g. from a plugin's "logFile"/"logLevel" keys. Empty keeps the current.
void configure(const std::string& file, const std::string& level);

}  // namespace cni::log
