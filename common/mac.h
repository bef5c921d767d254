#pragma once
// Ethernet MAC addresses: parsed and formatted in one place. The text form is lower-case
// "aa:bb:cc:dd:ee:ff", the form the kernel, the reference plugins and CNI results use.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cni {

class Mac {
 public:
  Mac() = default;
  explicit Mac(const std::array<uint8_t, 6>& bytes) : bytes_(bytes) {}
  static Mac from_bytes(const uint8_t* six) {
    Mac m;
    for (size_t i = 0; i < 6; ++i) m.bytes_[i] = six[i];
    return m;
  }
  // Six hex pairs separated by ':' or '-' (either case, as Go's net.ParseMAC takes the 48-bit
  // forms); anything else is nullopt.
  static std::optional<Mac> parse(std::string_view text);
  // A random unicast, locally administered address (what the kernel gives a new link).
  static Mac random_local();

  const std::array<uint8_t, 6>& bytes() const { return bytes_; }
  std::string str() const;

  auto operator<=>(const Mac&) const = default;

 private:
  std::array<uint8_t, 6> bytes_{};
};

// The text form of a MAC that may be absent: "" for none (a CNI result's empty "mac").
inline std::string mac_text(const std::optional<Mac>& mac) { return mac ? mac->str() : ""; }

}  // namespace cni
