#include "plugins/ipam-host-local/resolv_conf.h"

#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/files.h"

namespace cni::hostlocal {

Dns parse_resolv_conf(const std::string& text) {
  Dns dns;
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    // Whitespace-separated words, as `>>` splits them.
    std::vector<std::string> fields;
    constexpr std::string_view kSpace = " \t\r\v\f";
    for (size_t b = line.find_first_not_of(kSpace); b != std::string_view::npos;) {
      const size_t e = line.find_first_of(kSpace, b);
      fields.emplace_back(line.substr(b, e == std::string_view::npos ? e : e - b));
      b = e == std::string_view::npos ? e : line.find_first_not_of(kSpace, e);
    }
    if (fields.size() < 2 || fields[0][0] == '#' || fields[0][0] == ';') continue;
    const std::string& key = fields[0];
    if (key == "nameserver") {
      dns.nameservers.push_back(fields[1]);
    } else if (key == "domain") {
      dns.domain = fields[1];
    } else if (key == "search") {
      dns.search.insert(dns.search.end(), fields.begin() + 1, fields.end());
    } else if (key == "options") {
      dns.options.insert(dns.options.end(), fields.begin() + 1, fields.end());
    }
  }
  return dns;
}

Dns read_resolv_conf(const std::string& path) {
  auto text = read_file(path, kErrInvalidConfig);
  if (!text) {
    throw Error(kErrInvalidConfig, "open " + path + ": no such file or directory",
                "ipam.resolvConf");
  }
  return parse_resolv_conf(*text);
}

}  // namespace cni::hostlocal
