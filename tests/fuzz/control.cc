// The DNS daemon's control socket: each input line is one request as a connection delivers it
// (the daemon reads up to the first newline), handled by Server::handle_control in sequence on
// one daemon, with the reply the connection would send. Nothing is started: no sockets, no
// listeners; a record's gateways are dropped before it is registered, since each would be a
// socket bound on this machine.
#include <strings.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "plugins/dns-sidecar/server.h"
#include "tests/fuzz/fuzz.h"

using nlohmann::json;

namespace {

void drop_gateways(json& req) {
  if (!req.is_object()) return;
  auto rec = req.find("record");
  if (rec == req.end() || !rec->is_object()) return;
  for (auto it = rec->begin(); it != rec->end();) {
    if (strcasecmp(it.key().c_str(), "gateways") == 0) {
      it = rec->erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  static tether_fuzz::Scratch scratch;
  scratch.clear();
  cni::dns::ServerOptions o;
  o.state_dir = scratch.path();
  o.node = "fuzznode";
  cni::dns::Server server(o);
  std::string_view text = tether_fuzz::as_text(data, size);
  for (int n = 0; !text.empty() && n < 16; ++n) {
    auto nl = text.find('\n');
    std::string line(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    // As ControlConn::on_event.
    json req = json::parse(line, nullptr, false);
    drop_gateways(req);
    json reply;
    try {
      if (!req.is_object()) throw cni::Error(cni::kErrDecode, "request is not a JSON object");
      reply = server.handle_control(req);
    } catch (const std::exception& e) {
      reply = {{"ok", false}, {"error", e.what()}};
    }
    tether_fuzz::require(reply.is_object() && reply.contains("ok") && reply["ok"].is_boolean(),
                         "a reply says ok", reply.dump());
    (void)reply.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return 0;
}
