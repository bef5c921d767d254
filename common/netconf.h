#pragma once
// The configuration fields every plugin shares, and the typed readers each plugin's
// Config::parse builds on. Keys match the way Go's encoding/json matches them (exact name first,
// then case-insensitively): that is what the reference plugins accept and what runtimes rely on.
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/types.h"

namespace cni {

// The deepest nesting of arrays and objects accepted in any JSON from outside (stdin, a delegated
// plugin's output, a control message). A real config nests about 5 deep; nlohmann's dump(), copy
// and comparison recurse once per level, so unbounded depth is a stack overflow.
constexpr int kMaxJsonDepth = 64;

// Nesting depth of the JSON text `data` (0 for a scalar), found by a linear scan that understands
// strings and escapes, without parsing. Stops counting at `stop_at`.
int json_depth(std::string_view data, int stop_at = kMaxJsonDepth + 1);

// json::parse without exceptions for outside text: a value nested deeper than kMaxJsonDepth
// throws Error(`depth_code`) before anything recursive touches it; invalid JSON returns a
// discarded value (is_discarded()).
json parse_untrusted(std::string_view data, int depth_code);
// The same for text whose reader treats any bad content alike (a state or cache file, a line
// on a control socket, an etcd reply): nested deeper than kMaxJsonDepth, or not JSON, gives a
// discarded value. Every json::parse of text from outside the process goes through one of two.
json parse_bounded(std::string_view data);

// A JSON value shortened for a message: compact, invalid UTF-8 replaced, at most ~200 bytes.
std::string excerpt(const json& v);

// The value under `key` in `obj`, or nullptr when absent or JSON null (Go treats both as unset).
const json* find_key(const json& obj, std::string_view key);

// Typed readers. `where` prefixes the key in error messages ("ipam.ranges[0]"). A present value
// of the wrong type or out of range throws Error code 7 naming the key.
std::optional<bool> get_bool(const json& obj, std::string_view key, std::string_view where = {});
std::optional<std::string> get_string(const json& obj, std::string_view key,
                                      std::string_view where = {});
std::optional<int64_t> get_int(const json& obj, std::string_view key, std::string_view where = {},
                               int64_t min = std::numeric_limits<int32_t>::min(),
                               int64_t max = std::numeric_limits<int32_t>::max());
// get_int for a value that must be there (a state file's field): absent is error 7 too.
int64_t require_int(const json& obj, std::string_view key, std::string_view where, int64_t min,
                    int64_t max);
const json* get_object(const json& obj, std::string_view key, std::string_view where = {});
// Lists are bounded: a config list longer than `max` is error 7 (before any per-element work, so
// a list of millions costs nothing). kMaxList suits every list without a reason to be long;
// those with one pass their own cap (README of each plugin lists them).
constexpr size_t kMaxList = 1024;
const json* get_array(const json& obj, std::string_view key, std::string_view where = {},
                      size_t max = kMaxList);
std::optional<std::vector<std::string>> get_string_list(const json& obj, std::string_view key,
                                                        std::string_view where = {},
                                                        size_t max = kMaxList);
std::string key_path(std::string_view where, std::string_view key);

// Where tether keeps state of its own, checked the same way by every plugin (Error code 7 naming
// the key); `fallback` when the key is absent.
// nftTable: a letter, then letters, digits, '_', '-' or '.' (a name nft's CLI writes without
// quotes), at most kNftNameMax bytes: the kernel accepts NFT_NAME_MAXLEN - 1 for a table name.
inline constexpr size_t kNftNameMax = 255;
std::string get_nft_table(const json& obj, std::string_view fallback);
// stateDir: an absolute path, returned without trailing '/'.
std::string get_state_dir(const json& obj, std::string_view fallback);

// CNI_ARGS: "K=V;K=V" (deprecated but still sent by kubelet and podman). Unknown keys are an
// error unless IgnoreUnknown is true/1, exactly as the reference's types.LoadArgs.
class CniArgs {
 public:
  // Throws Error code 4 on a malformed pair.
  static CniArgs parse(std::string_view text);
  // Throws Error code 4 naming the first key not in `known` unless IgnoreUnknown is set. The
  // Kubernetes pod keys and IgnoreUnknown itself are always known.
  void check_known(std::initializer_list<std::string_view> known) const;
  std::optional<std::string> get(std::string_view key) const;
  const std::vector<std::pair<std::string, std::string>>& pairs() const { return pairs_; }

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
};

// A CNI attachment, what ADD and DEL are called for: (CNI_CONTAINERID, CNI_IFNAME).
struct Attachment {
  std::string container_id;
  std::string ifname;
  bool operator==(const Attachment&) const = default;
};

// GC's list of attachments still in use: `cni.dev/valid-attachments`, else the spec's original
// `cni.dev/attachments` (libcni sends both). nullopt when the config has neither: cnitool's gc
// sends no list, which must not read as "nothing is valid". An entry without containerID or
// ifname is error 7 naming it. At most kMaxAttachments entries (a node runs a few hundred
// containers per network; a runtime will not send more than it has).
constexpr size_t kMaxAttachments = 65536;
std::optional<std::vector<Attachment>> valid_attachments(const json& raw);

struct NetConf {
  std::string cni_version;
  std::string name;
  std::string type;
  json raw;                    // the whole config as received, for delegation and plugins
  json ipam = json::object();  // the `ipam` object, empty when absent
  std::optional<Dns> dns;      // the `dns` key
  std::optional<Result> prev_result;
  json runtime_config = json::object();
  json args = json::object();

  // Throws Error code 6 when stdin is not a JSON object, code 7 when name/type are missing
  // or a shared key has the wrong type. A config without cniVersion is "0.1.0", as in libcni.
  static NetConf parse(std::string_view data);
  std::string ipam_type() const;
};

}  // namespace cni
