#pragma once
// cni::Error is the one failure type that crosses the plugin boundary: plugin_main() catches it
// and prints it as the CNI error JSON {"cniVersion","code","msg","details"} on stdout.
#include <cerrno>
#include <stdexcept>
#include <string>

namespace cni {

// Well-known codes from the CNI spec (SPEC.md §5, pkg/types/types.go); 100+ are plugin specific.
enum ErrorCode : int {
  kErrIncompatibleVersion = 1,
  kErrUnsupportedField = 2,
  kErrUnknownContainer = 3,
  kErrInvalidEnv = 4,
  kErrIo = 5,
  kErrDecode = 6,
  kErrInvalidConfig = 7,
  kErrInvalidNetns = 8,
  kErrTryAgainLater = 11,
  kErrNotAvailable = 50,
  kErrNotAvailableLimited = 51,
  kErrInternal = 999,
};

class Error : public std::runtime_error {
 public:
  Error(int code, std::string msg, std::string details = {})
      : std::runtime_error(details.empty() ? msg : msg + ": " + details),
        code_(code),
        msg_(std::move(msg)),
        details_(std::move(details)) {}

  int code() const { return code_; }
  const std::string& msg() const { return msg_; }
  const std::string& details() const { return details_; }

 private:
  int code_;
  std::string msg_;
  std::string details_;
};

// Invalid configuration naming the offending key (code 7).
[[noreturn]] void throw_config(const std::string& details);

// A failed system call: msg is `what`, details carry strerror(err). Code defaults to internal.
[[noreturn]] void throw_errno(const std::string& what, int err = errno, int code = kErrInternal);

// libnl returns negative NLE_* codes; libmnl and libnftnl set errno.
[[noreturn]] void throw_nl(const std::string& what, int nl_err);

}  // namespace cni
