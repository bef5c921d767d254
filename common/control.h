#pragma once
// A line-JSON control socket between plugins and a per-host daemon (tether-agent; the DNS
// daemon has the same shape): a unix stream socket, one JSON request line and one JSON reply
// line per exchange. Only root may use it: the socket is 0600 in a directory that must be
// owned by the daemon's user and not writable by others, and the daemon checks SO_PEERCRED.
// Requests are {"op": ..., ...}; replies {"ok": true, ...} or
// {"ok": false, "error": "...", "code": <CNI code>}.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/files.h"

namespace cni::control {

using json = nlohmann::json;

// The daemon went away or did not answer in time (code 50, not available): kept apart from the
// errors a daemon reports itself, which carry their own code.
class Gone : public Error {
 public:
  Gone(std::string msg, std::string details = {})
      : Error(kErrNotAvailable, std::move(msg), std::move(details)) {}
};

class Client {
 public:
  // nullopt when nobody listens on `path` (no socket file, or a stale one). `who` names the
  // daemon in messages ("tether-agent", "the DNS daemon").
  static std::optional<Client> connect(const std::string& path, const std::string& who);
  // One exchange. Throws Gone when the daemon goes away or does not answer
  // within `timeout_ms`; for {"ok": false} an Error with the reply's code carrying the daemon's
  // message, or, for a reply with no code, kErrInternal "<who> refused the request" with the
  // daemon's message as details.
  json call(const json& request, int timeout_ms = 10000);

 private:
  Client(Fd fd, std::string who) : fd_(std::move(fd)), who_(std::move(who)) {}
  Fd fd_;
  std::string who_;
};

// The daemon's listening socket at `path`, non-blocking. Creates the directory (0700) when
// missing; refuses a directory that is not owned by us or is writable by group or others.
// A stale socket file is replaced; the caller must hold the daemon lock.
Fd listen(const std::string& path);

// True when the peer of a unix socket runs as root or as our own user.
bool peer_trusted(int fd);

// The reply for a failed request: {"ok": false, "error", "code"}.
json error_reply(int code, const std::string& message);

}  // namespace cni::control
