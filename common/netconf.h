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
const json* get_object(const json& obj, std::string_view key, std::string_view where = {});
const json* get_array(const json& obj, std::string_view key, std::string_view where = {});
std::optional<std::vector<std::string>> get_string_list(const json& obj, std::string_view key,
                                                        std::string_view where = {});
std::string key_path(std::string_view where, std::string_view key);

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
// ifname is error 7 naming it.
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
