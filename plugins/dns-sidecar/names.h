#pragma once
// Names as the daemon stores and looks them up: validated as DNS labels, compared
// case-insensitively (RFC 4343), written without the trailing root dot.
#include <optional>
#include <string>
#include <string_view>

namespace cni::dns {

// Why `name` cannot be registered, or nullopt when it can. A name is one or more labels joined
// by '.', each 1..63 characters of [A-Za-z0-9_-], at most 253 characters in all; one trailing
// '.' is allowed. Underscores are allowed because container names use them (compose's
// "project_web_1"); anything else would be a name no resolver can ask for.
std::optional<std::string> invalid_name_reason(std::string_view name);

// ASCII lowercase, without a trailing '.'.
std::string normalize_name(std::string_view name);

// True when `name` is `domain` or ends in ".<domain>"; both normalized.
bool in_domain(std::string_view name, std::string_view domain);

// `name` without ".<domain>" when it ends in it, else nullopt; both normalized.
std::optional<std::string_view> strip_domain(std::string_view name, std::string_view domain);

}  // namespace cni::dns
