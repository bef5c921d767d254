#include "plugins/dns-sidecar/names.h"

#include <cctype>

namespace cni::dns {

std::optional<std::string> invalid_name_reason(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) return "name is empty";
  if (name.size() > 253) return "name is longer than 253 characters";
  size_t label = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0) return "name has an empty label";
      if (label > 63) return "label longer than 63 characters";
      label = 0;
      continue;
    }
    auto c = static_cast<unsigned char>(name[i]);
    if (!std::isalnum(c) && c != '-' && c != '_') {
      std::string why = "character '?' is not allowed in a DNS label";
      why[11] = name[i];
      return why;
    }
    ++label;
  }
  return std::nullopt;
}

std::string normalize_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool in_domain(std::string_view name, std::string_view domain) {
  return !domain.empty() && (name == domain || strip_domain(name, domain).has_value());
}

std::optional<std::string_view> strip_domain(std::string_view name, std::string_view domain) {
  if (domain.empty() || name.size() <= domain.size() + 1) return std::nullopt;
  size_t dot = name.size() - domain.size() - 1;
  if (name[dot] != '.' || name.substr(dot + 1) != domain) return std::nullopt;
  return name.substr(0, dot);
}

}  // namespace cni::dns
