#include "plugins/dns-sidecar/plugin.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include "common/error.h"
#include "common/files.h"
#include "common/log.h"
#include "plugins/dns-sidecar/config.h"
#include "plugins/dns-sidecar/control.h"
#include "plugins/dns-sidecar/daemon.h"
#include "plugins/dns-sidecar/registry.h"

namespace cni::dns {

namespace {

// A daemon the plugin starts exits after this long without registrations; the next ADD
// starts another. A daemon under systemd runs with --idle-exit 0.
constexpr const char* kIdleExitSeconds = "60";
constexpr auto kStartWait = std::chrono::seconds(5);

Config load(const CmdArgs& args) {
  Config c = Config::parse(args.conf, args.args);
  if (!c.log_file.empty() || !c.log_level.empty()) log::configure(c.log_file, c.log_level);
  return c;
}

AttachmentKey key_of(const Config& c, const CmdArgs& args) {
  return {c.network, args.container_id, args.ifname};
}

uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Starts `dns-sidecar daemon --daemonize` (this very binary) and waits until it serves or
// fails. Its stdin/stdout are /dev/null: the runtime reads ours until EOF.
void spawn_daemon(const Config& c) {
  std::vector<std::string> argv = {"dns-sidecar", "daemon",      "--daemonize",
                                   "--state-dir", c.state_dir,   "--socket",
                                   c.socket,      "--idle-exit", kIdleExitSeconds};
  if (!c.resolv_conf.empty()) argv.insert(argv.end(), {"--resolv-conf", c.resolv_conf});
  if (!c.log_level.empty()) argv.insert(argv.end(), {"--log-level", c.log_level});
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork", errno, kErrNotAvailable);
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::close_range(3, ~0U, 0);
    ::execv("/proc/self/exe", cargv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error(kErrNotAvailable, "cannot start the DNS daemon",
                "see " + default_log_path(c.state_dir));
  }
}

// A connection to the daemon, starting one when none listens. Concurrent ADDs serialize on
// <stateDir>/start.lock, so one of them starts the daemon and the others find it serving.
ControlClient ensure_daemon(const Config& c) {
  if (auto client = ControlClient::connect(c.socket)) return std::move(*client);
  ensure_dir(c.state_dir, 0700);
  FileLock lock = FileLock::exclusive(c.state_dir + "/start.lock");
  if (auto client = ControlClient::connect(c.socket)) return std::move(*client);
  spdlog::info("starting the DNS daemon for {}", c.state_dir);
  spawn_daemon(c);
  // Normally the daemon serves when spawn_daemon returns. It may instead have found another
  // daemon holding the lock (systemd's, still starting): give that one time to bind.
  auto deadline = std::chrono::steady_clock::now() + kStartWait;
  for (;;) {
    if (auto client = ControlClient::connect(c.socket)) return std::move(*client);
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(kErrNotAvailable, "the DNS daemon does not answer", c.socket);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// One request, starting the daemon if needed; a daemon that went away mid-request (an idle
// exit racing with us) gets one more chance.
json call_daemon(const Config& c, const json& request) {
  for (int attempt = 0;; ++attempt) {
    ControlClient client = ensure_daemon(c);
    try {
      return client.call(request);
    } catch (const Error& e) {
      if (e.code() != kErrNotAvailable || attempt > 0) throw;
    }
  }
}

template <class T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
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
  try {
    call_daemon(c, {{"op", "add"}, {"record", r.to_json()}});
  } catch (...) {
    // A failed ADD leaves nothing that a later daemon would serve.
    store.remove(r.key);
    throw;
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
  // DEL never fails the chain: the runtime must get to run the other plugins' DEL.
  try {
    Config c = load(args);
    AttachmentKey key = key_of(c, args);
    RecordStore(c.state_dir).remove(key);
    if (auto client = ControlClient::connect(c.socket)) {
      client->call({{"op", "del"},
                    {"network", key.network},
                    {"containerID", key.container_id},
                    {"ifname", key.ifname}});
    }
  } catch (const std::exception& e) {
    spdlog::warn("DEL {} {}: {}", args.container_id, args.ifname, e.what());
  }
}

void cmd_check(const CmdArgs& args) {
  Config c = load(args);
  AttachmentKey key = key_of(c, args);
  if (!RecordStore(c.state_dir).load(key)) {
    throw Error(kErrNotRegistered, "dns-sidecar: attachment is not registered", key.str());
  }
  auto client = ControlClient::connect(c.socket);
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
  std::vector<std::string> errors;
  size_t removed = 0;
  for (const auto& key : store.list(c.network)) {
    if (std::find(keep.begin(), keep.end(), Attachment{key.container_id, key.ifname}) !=
        keep.end()) {
      continue;
    }
    try {
      removed += store.remove(key) ? 1 : 0;
    } catch (const std::exception& e) {
      errors.push_back(e.what());
    }
  }
  if (removed > 0) {
    try {
      if (auto client = ControlClient::connect(c.socket)) {
        client->call({{"op", "sync"}, {"network", c.network}});
      }
    } catch (const std::exception& e) {
      errors.push_back(e.what());
    }
  }
  if (!errors.empty()) {
    std::string all;
    for (const auto& e : errors) all += (all.empty() ? "" : "; ") + e;
    throw Error(kErrIo, "GC could not unregister everything", all);
  }
}

}  // namespace cni::dns
