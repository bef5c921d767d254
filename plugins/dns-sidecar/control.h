#pragma once
// The registration socket between the plugin and the daemon: a unix stream socket, one JSON
// request line and one JSON reply line per exchange. Only root may use it: the socket is 0600
// in a directory that must be root-owned and not writable by others, and the daemon checks
// SO_PEERCRED. Requests ({"op": ...}):
//   add   {"record": Record}              register (or replace) an attachment; the reply comes
//                                         once its names resolve and its listeners are bound
//   del   {"network","containerID","ifname"}
//   sync  {"network"}                     reload one network's records from the state dir
//   ping / list
// Replies: {"ok": true, ...} or {"ok": false, "error": "..."}.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/files.h"

namespace cni::dns {

using json = nlohmann::json;

class ControlClient {
 public:
  // nullopt when nobody listens on `path` (no socket file, or a stale one).
  static std::optional<ControlClient> connect(const std::string& path);
  // One exchange. Throws Error(kErrNotAvailable) when the daemon goes away or does not answer
  // within `timeout_ms`, and Error(kErrInternal) carrying the daemon's message for {"ok":false}.
  json call(const json& request, int timeout_ms = 10000);

 private:
  explicit ControlClient(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

// The daemon's listening socket at `path`, non-blocking. Creates the directory (0700) when
// missing; refuses a directory that is not owned by us or is writable by group or others.
// A stale socket file is replaced; the caller must hold the daemon lock.
Fd listen_control(const std::string& path);

// True when the peer of a unix socket runs as root or as our own user.
bool peer_trusted(int fd);

}  // namespace cni::dns
