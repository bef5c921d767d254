#include "common/error.h"

#include <netlink/errno.h>

#include <cstring>

namespace cni {

void throw_config(const std::string& details) {
  throw Error(kErrInvalidConfig, "invalid network configuration", details);
}

void throw_errno(const std::string& what, int err, int code) {
  throw Error(code, what, std::strerror(err));
}

void throw_nl(const std::string& what, int nl_err) {
  throw Error(kErrInternal, what, nl_geterror(nl_err < 0 ? -nl_err : nl_err));
}

}  // namespace cni
