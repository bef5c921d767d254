#pragma once
// cni::Error is the one failure type that crosses the plugin boundary: plugin_main() catches it
// and prints it as the CNI error JSON {"cniVersion","code","msg","details"} on stdout.
#include <cerrno>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

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

// `s` made safe to put in a message that reaches JSON: valid UTF-8 is kept, every byte that is
// not part of a valid UTF-8 sequence becomes the four characters \xNN, and the text is cut to
// about `max` bytes (on a character boundary) with a note of the original size. Outside input
// (env, stdin, file contents) reaches messages; nlohmann's dump() throws on invalid UTF-8, and the
// error path must never throw.
std::string printable(std::string_view s, size_t max = 4096);

// True when `s` is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s);

class Error : public std::runtime_error {
 public:
  // msg and details pass through printable(): an Error's text is always valid UTF-8.
  Error(int code, std::string_view msg, std::string_view details = {})
      : Error(code, printable(msg), printable(details), 0) {}

  int code() const { return code_; }
  const std::string& msg() const { return msg_; }
  const std::string& details() const { return details_; }

 private:
  Error(int code, std::string msg, std::string details, int)
      : std::runtime_error(details.empty() ? msg : msg + ": " + details),
        code_(code),
        msg_(std::move(msg)),
        details_(std::move(details)) {}
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
