#pragma once
#include "common/netconf.h"

namespace cni::hostlocal {

// Who a lease belongs to: the (containerID, ifname) of a CNI attachment.
using Attachment = cni::Attachment;

}  // namespace cni::hostlocal
