#pragma once
// RFC 4648 base64 (standard alphabet, padded): etcd's JSON gateway carries every key and value
// as base64 of its bytes.
#include <optional>
#include <string>
#include <string_view>

namespace cni {

std::string base64_encode(std::string_view bytes);
// nullopt on a character outside the alphabet, bad padding or a length that is not a multiple
// of 4; whitespace is not accepted either.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace cni
