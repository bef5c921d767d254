#pragma once
// The reference plugins' stdout for a result, byte for byte. The Go plugins print
// json.MarshalIndent(result, "", "    ") of libcni's result struct for a version: fields in
// struct order, omitted where the struct tag says omitempty, Go's string escaping, no newline
// at the end. Which struct depends on the version and, in the loopback plugin, on whether the
// result was built or passed through (see loopback.h).
#include <nlohmann/json.hpp>
#include <string>

#include "common/types.h"

namespace cni::loopback {

// libcni's result types: types/020 (0.1.0, 0.2.0: ip4/ip6 blocks), types/040 (0.3.x, 0.4.0:
// ips[].version), types/100 as of libcni 1.0 (1.0.0; the reference Debian ships) and as of
// libcni 1.2 (1.1.0: interface mtu/socketPath/pciID, route mtu/advmss/priority/table/scope).
enum class GoType { k020, k040, k100, k110 };

// The struct libcni parses and prints a result of `version` with.
GoType go_type_of(const std::string& version);

// The result as Go would print that struct with cniVersion set to `cni_version`.
std::string go_result_text(const Result& r, const std::string& cni_version, GoType type);

// json.MarshalIndent(v, "", "    ") of an ordered JSON value: objects in insertion order,
// `{}`/`[]` when empty, strings escaped as encoding/json does (HTML characters and U+2028/9 as
// \u escapes, other control characters but \n \r \t as \u00XX, invalid UTF-8 as U+FFFD).
std::string go_marshal_indent(const nlohmann::ordered_json& v);

}  // namespace cni::loopback
