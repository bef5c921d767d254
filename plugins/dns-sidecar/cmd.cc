#include "plugins/dns-sidecar/cmd.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "common/control.h"
#include "common/error.h"
#include "common/files.h"
#include "common/log.h"
#include "common/push_unique.h"
#include "common/undo.h"
#include "plugins/dns-sidecar/config.h"
#include "plugins/dns-sidecar/daemon.h"
#include "plugins/dns-sidecar/daemon_client.h"
#include "plugins/dns-sidecar/registry.h"

namespace cni::dns {

namespace {

Config load(const CmdArgs& args) {
  Config c = Config::parse(args.conf, args.args);
  if (!c.log_file.empty() || !c.log_level.empty()) log::configure(c.log_file, c.log_level);
  return c;
}

AttachmentKey key_of(const Config& c, const CmdArgs& args) {
  return {{c.network, args.container_id, args.ifname}, ""};
}

uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The record for this attachment: the addresses prevResult gives to our interface (all of them
// when no interface is referenced, as in an IPAM-only result) and their gateways.
Record make_record(const Config& c, const CmdArgs& args, const Result& prev) {
  Record r;
  r.key = key_of(c, args);
  r.name = c.name;
  r.hostname = c.hostname;
  r.aliases = c.aliases;
  r.container_aliases = c.container_aliases;
  r.upstreams = c.container_upstreams;
  r.net = {c.domain, c.upstreams, c.internal, c.ttl, c.port};
  r.serial = now_ns();
  r.cluster = !c.cluster_file.empty();
  auto ifindex = prev.container_interface(args.ifname);
  bool any_indexed = std::any_of(prev.ips.begin(), prev.ips.end(),
                                 [](const IpConfig& ip) { return ip.interface.has_value(); });
  for (const auto& ip : prev.ips) {
    if (any_indexed && ifindex && ip.interface != ifindex) continue;
    r.addresses.push_back(ip.address);
    if (ip.gateway) push_unique(r.gateways, *ip.gateway);
  }
  return r;
}

}  // namespace

Result cmd_add(const CmdArgs& args) {
  Config c = load(args);
  if (!args.conf.prev_result) {
    throw Error(kErrInvalidConfig, "dns-sidecar is a chained plugin",
                "prevResult is missing: put it after the plugin that creates the interface");
  }
  Result result = *args.conf.prev_result;
  Record r = make_record(c, args, result);
  r.validate();
  if (r.gateways.empty()) {
    spdlog::warn(
        "{}: prevResult has no gateway; names are registered but nobody is told to "
        "ask us",
        r.key.str());
  }
  RecordStore store(c.state_dir);
  ensure_dir(c.state_dir, 0700);
  store.save(r);
  // A failed ADD leaves nothing that a later daemon would serve.
  Rollback rollback;
  rollback.add("remove the record", [&] { store.remove(r.key); });
  json reply = call_daemon(c, {{"op", "add"}, {"record", r.to_json()}});
  rollback.commit();
  // Never a failure: the names are live on this host, and reach the others when etcd does.
  if (r.cluster && !reply.contains("published")) {
    spdlog::warn("{}: the running DNS daemon has no cluster file; the names stay local",
                 r.key.str());
  } else if (r.cluster && !reply.value("published", false)) {
    spdlog::warn("{}: live on this host, not yet published to the cluster: {}", r.key.str(),
                 reply.value("warning", ""));
  }
  // dnsname's order: our servers first, the domain after the existing search domains.
  std::vector<std::string> servers;
  for (const auto& gw : r.gateways) servers.push_back(gw.str());
  for (const auto& s : result.dns.nameservers) push_unique(servers, s);
  result.dns.nameservers = std::move(servers);
  if (!c.domain.empty()) push_unique(result.dns.search, c.domain);
  for (const auto& s : c.searches) push_unique(result.dns.search, s);
  for (const auto& o : c.options) push_unique(result.dns.options, o);
  return result;
}

void cmd_del(const CmdArgs& args) {
  // DEL never fails the chain: the runtime must get to run the other plugins' DEL. Each step
  // is tried; ErrorList logs what failed.
  ErrorList errors;
  errors.attempt("DEL " + args.container_id + " " + args.ifname, [&] {
    Config c = load(args);
    AttachmentKey key = key_of(c, args);
    errors.attempt("remove the record of " + key.str(),
                   [&] { RecordStore(c.state_dir).remove(key); });
    errors.attempt("unregister " + key.str() + " with the daemon", [&] {
      if (auto client = control::Client::connect(c.socket, kDaemon)) {
        client->call({{"op", "del"},
                      {"network", key.network},
                      {"containerID", key.container_id},
                      {"ifname", key.ifname}});
      }
    });
  });
}

void cmd_check(const CmdArgs& args) {
  Config c = load(args);
  AttachmentKey key = key_of(c, args);
  // A corrupt record is error 100 "state corrupt" (common/attachment_store.h).
  if (!RecordStore(c.state_dir).load_checked(key)) {
    throw Error(kErrNotRegistered, "dns-sidecar: attachment is not registered", key.str());
  }
  auto client = control::Client::connect(c.socket, kDaemon);
  if (!client) throw Error(kErrNotAvailable, "the DNS daemon is not running", c.socket);
  json reply = client->call({{"op", "check"},
                             {"network", key.network},
                             {"containerID", key.container_id},
                             {"ifname", key.ifname}});
  if (!reply.value("registered", false)) {
    throw Error(kErrNotRegistered, "the DNS daemon does not serve this attachment", key.str());
  }
}

void cmd_status(const CmdArgs& args) {
  Config c = load(args);
  try {
    call_daemon(c, {{"op", "ping"}});
  } catch (const Error& e) {
    throw Error(kErrNotAvailable, "the DNS daemon cannot be reached or started", e.what());
  }
}

void cmd_gc(const CmdArgs& args) {
  Config c = load(args);
  if (!c.valid_attachments) {
    spdlog::warn("GC: the config has no cni.dev/valid-attachments; unregistering nothing");
    return;
  }
  const std::vector<Attachment>& keep = *c.valid_attachments;
  RecordStore store(c.state_dir);
  ErrorList errors;
  size_t removed = 0;
  for (const auto& key : store.list(c.network)) {
    if (std::find(keep.begin(), keep.end(), Attachment{key.container_id, key.ifname}) !=
        keep.end()) {
      continue;
    }
    errors.attempt("remove the record of " + key.str(),
                   [&] { removed += store.remove(key) ? 1 : 0; });
  }
  // Even when no record was stale: a DEL killed between removing the record and telling the
  // daemon left the daemon serving names that no record backs any more.
  spdlog::debug("GC: {} stale records removed", removed);
  errors.attempt("resync the daemon", [&] {
    if (auto client = control::Client::connect(c.socket, kDaemon)) {
      client->call({{"op", "sync"}, {"network", c.network}});
    }
  });
  errors.raise("GC could not unregister everything");
}

}  // namespace cni::dns
