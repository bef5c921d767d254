#pragma once
// ipam.resolvConf: a resolv.conf-format file turned into the result's dns section.
#include <string>

#include "common/types.h"

namespace cni::hostlocal {

// Reads `path` the way the reference does: "nameserver X", "domain X", "search A B",
// "options A B"; comments (# ;), blank lines and lines with one field are skipped.
// Throws Error code 7 naming ipam.resolvConf when the file is missing, 5 when unreadable.
Dns read_resolv_conf(const std::string& path);

// The parsing half, for tests.
Dns parse_resolv_conf(const std::string& text);

}  // namespace cni::hostlocal
