#include "plugins/ipam-host-local/resolv_conf.h"

#include <sstream>
#include <vector>

#include "common/error.h"
#include "common/files.h"

namespace cni::hostlocal {

Dns parse_resolv_conf(const std::string& text) {
  Dns dns;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::vector<std::string> fields;
    for (std::string w; words >> w;) fields.push_back(w);
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
