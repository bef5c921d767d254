#include "common/mac.h"

#include <sys/random.h>

#include <cerrno>

#include "common/error.h"

namespace cni {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<Mac> Mac::parse(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  const char sep = text[2];
  if (sep != ':' && sep != '-') return std::nullopt;
  std::array<uint8_t, 6> b{};
  for (size_t i = 0; i < 6; ++i) {
    int hi = hex_value(text[i * 3]);
    int lo = hex_value(text[i * 3 + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != sep)) return std::nullopt;
    b[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return Mac(b);
}

Mac Mac::random_local() {
  std::array<uint8_t, 6> b{};
  size_t got = 0;
  while (got < b.size()) {
    ssize_t n = ::getrandom(b.data() + got, b.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("getrandom");
    got += static_cast<size_t>(n);
  }
  b[0] = static_cast<uint8_t>((b[0] & 0xfe) | 0x02);  // unicast, locally administered
  return Mac(b);
}

std::string Mac::str() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(17);
  for (size_t i = 0; i < 6; ++i) {
    if (i) out += ':';
    out += kHex[bytes_[i] >> 4];
    out += kHex[bytes_[i] & 0xF];
  }
  return out;
}

}  // namespace cni
