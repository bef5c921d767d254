#pragma once
// IPv4/IPv6 addresses and prefixes: parsing, formatting and the range arithmetic IPAM needs.
#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cni {

class IpAddr {
 public:
  enum class Family : uint8_t { kV4 = 4, kV6 = 6 };

  IpAddr() = default;
  static IpAddr v4(uint32_t host_order);
  // Accepts dotted IPv4 and any RFC 4291 IPv6 text; an IPv4-mapped IPv6 address stays IPv6.
  static std::optional<IpAddr> parse(std::string_view text);
  // Network-order bytes: 4 for IPv4, 16 for IPv6.
  static IpAddr from_bytes(Family family, const uint8_t* bytes);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::kV4; }
  int bits() const { return is_v4() ? 32 : 128; }
  int byte_len() const { return is_v4() ? 4 : 16; }
  const uint8_t* bytes() const { return bytes_.data(); }
  int af() const;  // AF_INET / AF_INET6
  std::string str() const;

  // The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), which Go's
  // net.ParseIP, and so the reference plugins, treat as IPv4; any other address unchanged.
  IpAddr unmapped() const;

  // Wrapping successor/predecessor within the family.
  IpAddr next() const;
  IpAddr prev() const;
  bool is_zero() const;

  auto operator<=>(const IpAddr&) const = default;

 private:
  Family family_ = Family::kV4;
  std::array<uint8_t, 16> bytes_{};
};

// An address with a prefix length, as in "10.1.0.5/16". The address is kept as written;
// network() gives the masked form.
class Prefix {
 public:
  Prefix() = default;
  Prefix(IpAddr addr, int len) : addr_(addr), len_(len) {}
  // Requires "addr/len"; with allow_bare_ip a bare address gets the full-length prefix.
  static std::optional<Prefix> parse(std::string_view text, bool allow_bare_ip = false);

  const IpAddr& addr() const { return addr_; }
  int len() const { return len_; }
  std::string str() const;

  Prefix network() const;
  IpAddr first() const { return network().addr(); }
  IpAddr last() const;  // all host bits set (the IPv4 broadcast)
  bool contains(const IpAddr& ip) const;
  bool overlaps(const Prefix& other) const;

  auto operator<=>(const Prefix&) const = default;

 private:
  IpAddr addr_;
  int len_ = 0;
};

// Byte-wise mask helpers, exposed for nftables code that needs raw network-order bytes.
IpAddr mask_addr(const IpAddr& ip, int len);

}  // namespace cni
