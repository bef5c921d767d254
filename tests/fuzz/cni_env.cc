// The whole CNI call as plugin_main sees it: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS,
// CNI_IFNAME, CNI_ARGS and CNI_PATH from the environment and the config on stdin. The input is
// those six values and stdin, separated by "\n%%\n" lines. The verbs do nothing (an ADD answers
// the prevResult), so what is fuzzed is the env and config checking and the one answer:
// exactly one line on stdout, JSON, an error with a positive code and a message.
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/skel.h"
#include "tests/fuzz/fuzz.h"

using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  auto parts = tether_fuzz::split_parts(tether_fuzz::as_text(data, size));
  static const char* const kNames[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS",
                                       "CNI_IFNAME",  "CNI_ARGS",        "CNI_PATH"};
  constexpr size_t kEnv = std::size(kNames);
  std::ostringstream out;
  std::ostringstream err;
  cni::Io io{
      [&](const char* name) -> std::optional<std::string> {
        // The netns is never opened: the target must not touch the machine.
        if (std::string_view(name) == "CNI_NETNS_OVERRIDE") return "1";
        for (size_t i = 0; i < kEnv; ++i) {
          // A part that is exactly "-" is an unset variable (an empty one is set and empty).
          if (std::string_view(name) == kNames[i] && i < parts.size() && parts[i] != "-") {
            // An environment value ends at its first NUL.
            std::string v(parts[i]);
            return v.substr(0, v.find('\0'));
          }
        }
        return std::nullopt;
      },
      [&] { return parts.size() > kEnv ? std::string(parts[kEnv]) : std::string(); },
      [&out](std::string_view s) { out << s; },
      [&err](std::string_view s) { err << s; },
  };
  cni::Verbs verbs;
  verbs.add = [](const cni::CmdArgs& a) { return a.conf.prev_result.value_or(cni::Result{}); };
  verbs.del = [](const cni::CmdArgs&) {};
  verbs.check = [](const cni::CmdArgs&) {};
  verbs.status = [](const cni::CmdArgs&) {};
  verbs.gc = [](const cni::CmdArgs&) {};
  int rc = cni::plugin_main(verbs, "fuzz v0 (tether)", io);
  std::string text = out.str();
  auto command = io.getenv("CNI_COMMAND").value_or("");
  if (command.empty()) {
    tether_fuzz::require(rc == 0 && text.empty(), "no CNI_COMMAND: about text on stderr only");
    return 0;
  }
  if (rc == 0 && text.empty()) return 0;  // DEL, CHECK, STATUS, GC succeeded
  tether_fuzz::require(!text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1,
                       "one line on stdout", text);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    tether_fuzz::violated("stdout is not JSON", text);
  }
  tether_fuzz::require(j.is_object(), "stdout is a JSON object", text);
  if (rc != 0) {
    tether_fuzz::require(
        j.contains("code") && j["code"].is_number_integer() && j["code"].get<int64_t>() > 0,
        "an error has a positive code", text);
    tether_fuzz::require(
        j.contains("msg") && j["msg"].is_string() && !j["msg"].get<std::string>().empty(),
        "an error has a message", text);
    tether_fuzz::require(j.contains("cniVersion") && j["cniVersion"].is_string(),
                         "an error has a cniVersion", text);
  }
  return 0;
}
