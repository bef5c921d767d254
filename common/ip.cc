#include "common/ip.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>

namespace cni {

IpAddr IpAddr::v4(uint32_t host_order) {
  uint32_t net = htonl(host_order);
  return from_bytes(Family::kV4, reinterpret_cast<const uint8_t*>(&net));
}

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
    return std::nullopt;
  }
  std::string s(text);
  IpAddr ip;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), ip.bytes_.data()) != 1) {
      return std::nullopt;
    }
    ip.family_ = Family::kV4;
  } else {
    if (inet_pton(AF_INET6, s.c_str(), ip.bytes_.data()) != 1) {
      return std::nullopt;
    }
    ip.family_ = Family::kV6;
  }
  return ip;
}

IpAddr IpAddr::from_bytes(Family family, const uint8_t* bytes) {
  IpAddr ip;
  ip.family_ = family;
  std::memcpy(ip.bytes_.data(), bytes, family == Family::kV4 ? 4 : 16);
  return ip;
}

int IpAddr::af() const { return is_v4() ? AF_INET : AF_INET6; }

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(af(), bytes_.data(), buf, sizeof(buf));
  std::string out = buf;
  // glibc prints IPv4-compatible addresses (::a.b.c.d, deprecated by RFC 4291) dotted, where Go
  // and RFC 5952 print hex groups ("::a00:1"); host-local lease file names must match Go's.
  // Only IPv4-mapped addresses (::ffff:a.b.c.d) keep the dotted form.
  if (is_v4() || out.find('.') == std::string::npos || out.starts_with("::ffff:")) return out;
  // glibc takes that form only when groups 0-5 are zero and group 6 is not.
  char hex[16];
  snprintf(hex, sizeof(hex), "::%x:%x", static_cast<unsigned>(bytes_[12] << 8 | bytes_[13]),
           static_cast<unsigned>(bytes_[14] << 8 | bytes_[15]));
  out = hex;
  return out;
}

IpAddr IpAddr::unmapped() const {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (is_v4() || std::memcmp(bytes_.data(), kMappedPrefix, sizeof(kMappedPrefix)) != 0) {
    return *this;
  }
  return from_bytes(Family::kV4, bytes_.data() + 12);
}

IpAddr IpAddr::next() const {
  IpAddr r = *this;
  for (int i = byte_len() - 1; i >= 0; --i) {
    if (++r.bytes_[i] != 0) {
      break;
    }
  }
  return r;
}

IpAddr IpAddr::prev() const {
  IpAddr r = *this;
  for (int i = byte_len() - 1; i >= 0; --i) {
    if (r.bytes_[i]-- != 0) {
      break;
    }
  }
  return r;
}

bool IpAddr::is_zero() const {
  for (int i = 0; i < byte_len(); ++i) {
    if (bytes_[i] != 0) {
      return false;
    }
  }
  return true;
}

IpAddr mask_addr(const IpAddr& ip, int len) {
  uint8_t b[16];
  std::memcpy(b, ip.bytes(), ip.byte_len());
  for (int i = 0; i < ip.byte_len(); ++i) {
    int keep = len - i * 8;
    if (keep <= 0) {
      b[i] = 0;
    } else if (keep < 8) {
      b[i] &= static_cast<uint8_t>(0xff << (8 - keep));
    }
  }
  return IpAddr::from_bytes(ip.family(), b);
}

std::optional<Prefix> Prefix::parse(std::string_view text, bool allow_bare_ip) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    if (!allow_bare_ip) {
      return std::nullopt;
    }
    auto ip = IpAddr::parse(text);
    if (!ip) {
      return std::nullopt;
    }
    return Prefix(*ip, ip->bits());
  }
  auto ip = IpAddr::parse(text.substr(0, slash));
  auto len_text = text.substr(slash + 1);
  if (!ip || len_text.empty() || len_text.size() > 3) {
    return std::nullopt;
  }
  int len = 0;
  for (char c : len_text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    len = len * 10 + (c - '0');
  }
  if (len > ip->bits()) {
    return std::nullopt;
  }
  return Prefix(*ip, len);
}

std::string Prefix::str() const { return addr_.str() + "/" + std::to_string(len_); }

Prefix Prefix::network() const { return Prefix(mask_addr(addr_, len_), len_); }

IpAddr Prefix::last() const {
  uint8_t b[16];
  std::memcpy(b, addr_.bytes(), addr_.byte_len());
  for (int i = 0; i < addr_.byte_len(); ++i) {
    int keep = len_ - i * 8;
    if (keep <= 0) {
      b[i] = 0xff;
    } else if (keep < 8) {
      b[i] |= static_cast<uint8_t>(0xff >> keep);
    }
  }
  return IpAddr::from_bytes(addr_.family(), b);
}

bool Prefix::contains(const IpAddr& ip) const {
  return ip.family() == addr_.family() && mask_addr(ip, len_) == mask_addr(addr_, len_);
}

bool Prefix::overlaps(const Prefix& other) const {
  if (other.addr_.family() != addr_.family()) {
    return false;
  }
  int len = std::min(len_, other.len_);
  return mask_addr(addr_, len) == mask_addr(other.addr_, len);
}

}  // namespace cni
