#pragma once
#include <string>

namespace cni::hostlocal {

// A CNI attachment, (containerID, ifname): who a lease belongs to.
struct Attachment {
  std::string container_id;
  std::string ifname;
};

}  // namespace cni::hostlocal
