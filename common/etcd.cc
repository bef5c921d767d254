#include "common/etcd.h"

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "common/base64.h"
#include "common/netconf.h"

namespace cni::etcd {

namespace {

using Clock = std::chrono::steady_clock;

// The few libcurl entry points the client uses, resolved from libcurl.so.4 at first use. The
// header gives only types and constants: nothing here links against libcurl.
struct CurlApi {
  CURLcode (*global_init)(long) = nullptr;
  CURL* (*easy_init)() = nullptr;
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...) = nullptr;
  CURLcode (*easy_perform)(CURL*) = nullptr;
  CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...) = nullptr;
  void (*easy_cleanup)(CURL*) = nullptr;
  const char* (*easy_strerror)(CURLcode) = nullptr;
  curl_slist* (*slist_append)(curl_slist*, const char*) = nullptr;
  void (*slist_free_all)(curl_slist*) = nullptr;
  std::string error{};  // why loading failed
};

template <typename F>
bool resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(::dlsym(lib, name));
  return fn != nullptr;
}

const CurlApi& curl_api() {
  static CurlApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = ::dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = ::dlerror();
      api.error = std::string("cannot load libcurl.so.4 (install libcurl4): ") + (e ? e : "");
      return;
    }
    bool ok = resolve(lib, "curl_global_init", api.global_init) &&
              resolve(lib, "curl_easy_init", api.easy_init) &&
              resolve(lib, "curl_easy_setopt", api.easy_setopt) &&
              resolve(lib, "curl_easy_perform", api.easy_perform) &&
              resolve(lib, "curl_easy_getinfo", api.easy_getinfo) &&
              resolve(lib, "curl_easy_cleanup", api.easy_cleanup) &&
              resolve(lib, "curl_easy_strerror", api.easy_strerror) &&
              resolve(lib, "curl_slist_append", api.slist_append) &&
              resolve(lib, "curl_slist_free_all", api.slist_free_all);
    if (!ok) {
      api.error = "libcurl.so.4 lacks a function the etcd client needs";
      return;
    }
    // Once, before any handle and before other threads use libcurl.
    if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) api.error = "curl_global_init failed";
  });
  if (!api.error.empty()) throw Unavailable(api.error);
  return api;
}

int64_t i64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;  // proto3 leaves zero values out
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (const std::exception&) {
    }
  }
  throw Error(kErrInternal, "etcd sent a malformed reply", std::string(key) + ": " + it->dump());
}

std::string decode(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (!it->is_string()) throw Error(kErrInternal, "etcd sent a malformed reply", key);
  auto v = base64_decode(it->get<std::string>());
  if (!v) throw Error(kErrInternal, "etcd sent bad base64", key);
  return *v;
}

KeyValue parse_kv(const json& j) {
  KeyValue kv;
  kv.key = decode(j, "key");
  kv.value = decode(j, "value");
  kv.create_revision = i64(j, "create_revision");
  kv.mod_revision = i64(j, "mod_revision");
  kv.version = i64(j, "version");
  kv.lease = i64(j, "lease");
  return kv;
}

int64_t header_revision(const json& reply) {
  auto h = reply.find("header");
  return h == reply.end() ? 0 : i64(*h, "revision");
}

// The gateway's error body: {"error": "...", "code": <grpc>, "message": "..."}.
[[noreturn]] void throw_refused(const std::string& path, const json& reply, long status) {
  int code = reply.is_object() ? reply.value("code", 2) : 2;
  std::string msg = reply.is_object() ? reply.value("message", reply.value("error", "")) : "";
  if (msg.empty()) msg = "HTTP " + std::to_string(status);
  throw Refused(code, path + ": " + msg);
}

// gRPC codes that mean "this member cannot serve now" (no leader, shutting down, deadline):
// another endpoint may.
bool member_unavailable(int grpc_code) { return grpc_code == 14 || grpc_code == 4; }

size_t append_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

struct WatchState {
  std::string buf{};
  const std::function<bool(const std::vector<Event>&, int64_t)>* on_events = nullptr;
  const std::atomic<bool>* stop = nullptr;
  bool created = false;
  bool finished = false;  // on_events asked to stop, or stop was set
  int64_t compacted = 0;
  std::string error{};
  std::exception_ptr callback_error{};
};

// Handles one message of the watch stream; false to end the stream.
bool watch_message(WatchState& w, const json& m) {
  if (m.contains("error")) {
    w.error =
        m["error"].is_object() ? m["error"].value("message", m["error"].dump()) : m["error"].dump();
    return false;
  }
  const json& r = m.contains("result") ? m["result"] : m;
  if (r.value("created", false)) w.created = true;
  if (int64_t c = i64(r, "compact_revision"); c > 0) {
    w.compacted = c;
    return false;
  }
  if (r.value("canceled", false)) {
    w.error = "watch canceled: " + r.value("cancel_reason", std::string("no reason given"));
    return false;
  }
  auto evs = r.find("events");
  if (evs == r.end() || evs->empty()) return true;
  std::vector<Event> events;
  for (const json& e : *evs) {
    Event ev;
    ev.deleted = e.value("type", std::string("PUT")) == "DELETE";
    if (e.contains("kv")) ev.kv = parse_kv(e["kv"]);
    events.push_back(std::move(ev));
  }
  if (!(*w.on_events)(events, header_revision(r))) {
    w.finished = true;
    return false;
  }
  return true;
}

size_t watch_body(char* data, size_t size, size_t n, void* user) {
  auto& w = *static_cast<WatchState*>(user);
  w.buf.append(data, size * n);
  // The gateway ends every message with a newline.
  for (size_t nl; (nl = w.buf.find('\n')) != std::string::npos;) {
    std::string line = w.buf.substr(0, nl);
    w.buf.erase(0, nl + 1);
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    json m = parse_bounded(line);
    if (!m.is_object()) {
      w.error = "malformed watch message";
      return 0;
    }
    try {
      if (!watch_message(w, m)) return 0;
    } catch (...) {
      w.callback_error = std::current_exception();
      return 0;
    }
  }
  return size * n;
}

int watch_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto& w = *static_cast<WatchState*>(user);
  if (w.stop && w.stop->load()) {
    w.finished = true;
    return 1;
  }
  return 0;
}

}  // namespace

Options Options::from(const cluster::ClusterConfig& c) {
  Options o;
  o.endpoints = c.etcd;
  o.tls = c.tls;
  o.timeout_ms = c.timeout_ms;
  o.connect_timeout_ms = std::min(500, c.timeout_ms);
  return o;
}

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct Client::Impl {
  Options options;
  size_t current = 0;  // endpoint index tried first
  CURL* handle = nullptr;
  curl_slist* headers = nullptr;

  ~Impl() {
    if (handle || headers) {
      const CurlApi& c = curl_api();
      if (handle) c.easy_cleanup(handle);
      if (headers) c.slist_free_all(headers);
    }
  }

  CURL* easy() {
    const CurlApi& c = curl_api();
    if (!handle) {
      handle = c.easy_init();
      if (!handle) throw Unavailable("curl_easy_init failed");
      headers = c.slist_append(nullptr, "Content-Type: application/json");
    }
    return handle;
  }

  // Options every request shares; the caller sets the body and the write callback.
  void setup(CURL* h, const std::string& url, const std::string& body, long timeout_ms) {
    const CurlApi& c = curl_api();
    c.easy_setopt(h, CURLOPT_URL, url.c_str());
    c.easy_setopt(h, CURLOPT_POST, 1L);
    c.easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
    c.easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    c.easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    c.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads; no SIGALRM for resolver timeouts
    c.easy_setopt(h, CURLOPT_NOPROXY, "*");  // an http_proxy in the environment is not for etcd
    c.easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                  std::min<long>(timeout_ms, options.connect_timeout_ms));
    c.easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    c.easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    c.easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 3L);
    c.easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 1L);
    c.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (options.tls) {
      if (!options.tls->cert.empty()) c.easy_setopt(h, CURLOPT_SSLCERT, options.tls->cert.c_str());
      if (!options.tls->key.empty()) c.easy_setopt(h, CURLOPT_SSLKEY, options.tls->key.c_str());
      if (!options.tls->ca.empty()) c.easy_setopt(h, CURLOPT_CAINFO, options.tls->ca.c_str());
    }
  }

  json call(const std::string& path, const json& request) {
    if (options.endpoints.empty()) throw Unavailable("no etcd endpoint configured");
    const CurlApi& c = curl_api();
    CURL* h = easy();
    std::string body = request.dump();
    auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
    std::string failures;
    size_t n = options.endpoints.size();
    // Each endpoint once, and the first a second time: a kept-alive connection that died with
    // a restarted etcd fails once before a fresh one is opened.
    size_t attempts = n + 1;
    for (size_t a = 0; a < attempts; ++a) {
      long left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      size_t idx = (current + a) % n;
      const std::string& ep = options.endpoints[idx];
      std::string reply;
      setup(h, ep + path, body, left);
      c.easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
      c.easy_setopt(h, CURLOPT_WRITEDATA, &reply);
      CURLcode rc = c.easy_perform(h);
      if (rc != CURLE_OK) {
        failures += (failures.empty() ? "" : "; ") + ep + ": " + c.easy_strerror(rc);
        continue;
      }
      long status = 0;
      c.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      json j = parse_bounded(reply);
      if (status == 200 && j.is_object()) {
        current = idx;
        return j;
      }
      int code = j.is_object() ? j.value("code", 2) : 2;
      if (member_unavailable(code) || status == 503 || status == 504) {
        failures +=
            (failures.empty() ? "" : "; ") + ep + ": " +
            (j.is_object() ? j.value("message", "unavailable") : "HTTP " + std::to_string(status));
        continue;
      }
      current = idx;
      throw_refused(path, j, status);
    }
    throw Unavailable(failures.empty()
                          ? "no answer within " + std::to_string(options.timeout_ms) + " ms"
                          : failures);
  }
};

Client::Client(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

const std::string& Client::endpoint() const {
  static const std::string none;
  return impl_->options.endpoints.empty() ? none : impl_->options.endpoints[impl_->current];
}

json Client::call(const std::string& path, const json& body) { return impl_->call(path, body); }

std::optional<KeyValue> Client::get(const std::string& key) {
  json r = call("/v3/kv/range", {{"key", base64_encode(key)}});
  auto kvs = r.find("kvs");
  if (kvs == r.end() || kvs->empty()) return std::nullopt;
  return parse_kv((*kvs)[0]);
}

Range Client::get_prefix(const std::string& prefix) {
  json r = call("/v3/kv/range",
                {{"key", base64_encode(prefix)}, {"range_end", base64_encode(prefix_end(prefix))}});
  Range out;
  out.revision = header_revision(r);
  if (auto kvs = r.find("kvs"); kvs != r.end()) {
    for (const json& kv : *kvs) out.kvs.push_back(parse_kv(kv));
  }
  return out;
}

int64_t Client::put(const std::string& key, const std::string& value, int64_t lease) {
  json req = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease) req["lease"] = std::to_string(lease);
  return header_revision(call("/v3/kv/put", req));
}

bool Client::create(const std::string& key, const std::string& value, int64_t lease,
                    KeyValue* existing) {
  json put = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease) put["lease"] = std::to_string(lease);
  json req = {{"compare", json::array({{{"key", base64_encode(key)},
                                        {"target", "CREATE"},
                                        {"result", "EQUAL"},
                                        {"create_revision", "0"}}})},
              {"success", json::array({{{"request_put", put}}})},
              {"failure", json::array({{{"request_range", {{"key", base64_encode(key)}}}}})}};
  json r = call("/v3/kv/txn", req);
  if (r.value("succeeded", false)) return true;
  if (existing) {
    *existing = KeyValue{};
    for (const json& resp : r.value("responses", json::array())) {
      auto rr = resp.find("response_range");
      if (rr == resp.end()) continue;
      auto kvs = rr->find("kvs");
      if (kvs != rr->end() && !kvs->empty()) *existing = parse_kv((*kvs)[0]);
    }
  }
  return false;
}

bool Client::delete_if_value(const std::string& key, const std::string& value) {
  json req = {
      {"compare", json::array({{{"key", base64_encode(key)},
                                {"target", "VALUE"},
                                {"result", "EQUAL"},
                                {"value", base64_encode(value)}}})},
      {"success", json::array({{{"request_delete_range", {{"key", base64_encode(key)}}}}})}};
  return call("/v3/kv/txn", req).value("succeeded", false);
}

int64_t Client::del(const std::string& key) {
  return i64(call("/v3/kv/deleterange", {{"key", base64_encode(key)}}), "deleted");
}

int64_t Client::del_prefix(const std::string& prefix) {
  return i64(call("/v3/kv/deleterange", {{"key", base64_encode(prefix)},
                                         {"range_end", base64_encode(prefix_end(prefix))}}),
             "deleted");
}

int64_t Client::lease_grant(int ttl_seconds) {
  json r = call("/v3/lease/grant", {{"TTL", std::to_string(ttl_seconds)}});
  if (r.contains("error") && !r["error"].get<std::string>().empty()) {
    throw Refused(2, "lease grant: " + r["error"].get<std::string>());
  }
  int64_t id = i64(r, "ID");
  if (id == 0) throw Error(kErrInternal, "etcd granted no lease", r.dump());
  return id;
}

int64_t Client::lease_keepalive(int64_t id) {
  // A bidirectional stream in gRPC; through the gateway one request gives one result.
  json r = call("/v3/lease/keepalive", {{"ID", std::to_string(id)}});
  const json& res = r.contains("result") ? r["result"] : r;
  return i64(res, "TTL");
}

void Client::lease_revoke(int64_t id) {
  try {
    call("/v3/lease/revoke", {{"ID", std::to_string(id)}});
  } catch (const Refused& e) {
    if (e.grpc_code() != 5) throw;  // NOT_FOUND: expired already
  }
}

void Client::watch(const std::string& prefix, int64_t start_revision,
                   const std::function<bool(const std::vector<Event>&, int64_t)>& on_events,
                   const std::atomic<bool>* stop) {
  Impl& im = *impl_;
  if (im.options.endpoints.empty()) throw Unavailable("no etcd endpoint configured");
  const CurlApi& c = curl_api();
  CURL* h = im.easy();
  json create = {{"key", base64_encode(prefix)},
                 {"range_end", base64_encode(prefix_end(prefix))},
                 {"start_revision", std::to_string(start_revision)}};
  std::string body = json{{"create_request", create}}.dump();
  std::string failures;
  size_t n = im.options.endpoints.size();
  for (size_t a = 0; a < n; ++a) {
    size_t idx = (im.current + a) % n;
    const std::string& ep = im.options.endpoints[idx];
    WatchState w;
    w.on_events = &on_events;
    w.stop = stop;
    im.setup(h, ep + "/v3/watch", body, im.options.timeout_ms);
    c.easy_setopt(h, CURLOPT_TIMEOUT_MS, 0L);  // a stream: no total time limit
    c.easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_body);
    c.easy_setopt(h, CURLOPT_WRITEDATA, &w);
    c.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    c.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, watch_progress);
    c.easy_setopt(h, CURLOPT_XFERINFODATA, &w);
    CURLcode rc = c.easy_perform(h);
    c.easy_setopt(h, CURLOPT_NOPROGRESS, 1L);
    c.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, nullptr);
    if (w.callback_error) std::rethrow_exception(w.callback_error);
    if (w.finished) return;
    if (w.compacted) throw Compacted(w.compacted);
    if (!w.error.empty()) throw Refused(2, "watch " + prefix + ": " + w.error);
    if (w.created) {
      // The stream was up and then broke: etcd went away. The caller resumes or re-reads.
      im.current = idx;
      throw Unavailable("watch stream from " + ep + " ended: " +
                        (rc == CURLE_OK ? std::string("closed by etcd") : c.easy_strerror(rc)));
    }
    failures += (failures.empty() ? "" : "; ") + ep + ": " +
                (rc == CURLE_OK ? std::string("no watch created") : c.easy_strerror(rc));
  }
  throw Unavailable(failures);
}

Mirror::Mirror(Options options, std::string prefix)
    : options_(std::move(options)), prefix_(std::move(prefix)) {}

void Mirror::run(const std::atomic<bool>& stop,
                 const std::function<void(const Snapshot&)>& on_change,
                 const std::function<void(bool)>& on_connected, int max_retry_ms) {
  Client client(options_);
  Snapshot snap;
  bool delivered = false;
  std::optional<bool> connected;
  int retry_ms = 100;
  auto report = [&](bool up) {
    if (connected != up && on_connected) on_connected(up);
    connected = up;
  };
  while (!stop.load()) {
    try {
      Range r = client.get_prefix(prefix_);
      Snapshot fresh;
      for (auto& kv : r.kvs) fresh.emplace(kv.key, std::move(kv));
      report(true);
      retry_ms = 100;
      if (!delivered || fresh != snap) {
        snap = std::move(fresh);
        delivered = true;
        on_change(snap);
      }
      client.watch(
          prefix_, r.revision + 1,
          [&](const std::vector<Event>& events, int64_t) {
            for (const Event& e : events) {
              if (e.deleted) {
                snap.erase(e.kv.key);
              } else {
                snap[e.kv.key] = e.kv;
              }
            }
            on_change(snap);
            return !stop.load();
          },
          &stop);
    } catch (const Compacted&) {
      continue;  // read again at once
    } catch (const Unavailable&) {
      report(false);
    } catch (const Refused&) {
      report(false);
    }
    // Interruptible back-off.
    for (int waited = 0; waited < retry_ms && !stop.load(); waited += 20) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    retry_ms = std::min(retry_ms * 2, max_retry_ms);
  }
}

}  // namespace cni::etcd
