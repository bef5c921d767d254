#include "common/error.h"

#include <netlink/errno.h>

#include <algorithm>
#include <cstring>

namespace cni {
namespace {

// Length of the valid UTF-8 sequence at s[i], 0 when the byte there does not start one.
size_t utf8_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string printable(std::string_view s, size_t max) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(s.size(), max) + 16);
  size_t i = 0;
  while (i < s.size() && out.size() < max) {
    size_t n = utf8_len(s, i);
    if (n == 0) {
      auto c = static_cast<unsigned char>(s[i]);
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      n = 1;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  if (i < s.size()) {
    out += "... (" + std::to_string(s.size()) + " bytes)";
  }
  return out;
}

void throw_config(const std::string& details) {
  throw Error(kErrInvalidConfig, "invalid network configuration", details);
}

void throw_errno(const std::string& what, int err, int code) {
  throw Error(code, what, std::strerror(err));
}

void throw_nl(const std::string& what, int nl_err) {
  throw Error(kErrInternal, what, nl_geterror(nl_err < 0 ? -nl_err : nl_err));
}

}  // namespace cni
