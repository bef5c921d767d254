#include "plugins/loopback/cmd.h"

#include <linux/if.h>
#include <sys/socket.h>

#include <optional>
#include <vector>

#include "common/error.h"
#include "common/netlink.h"
#include "common/netns.h"
#include "plugins/loopback/go_result.h"

namespace cni::loopback {

namespace {

constexpr const char* kLo = "lo";

// The prevResult versions libcni's result struct for the config's version accepts
// (create.Create): another version is a decode error, not a silent conversion. A prevResult
// without cniVersion is taken to be in the config's version, as libcni does.
void check_prev_result_version(const CmdArgs& args) {
  const json* prev = find_key(args.conf.raw, "prevResult");
  if (!prev) return;
  std::string version = get_string(*prev, "cniVersion", "prevResult").value_or("");
  if (version.empty()) return;
  GoType want = go_type_of(args.conf.cni_version);
  // go_type_of() maps a version it does not know to k110, which the other types never equal.
  bool ok = want == GoType::k110 ? (version == "1.0.0" || version == "1.1.0")
                                 : go_type_of(version) == want;
  if (!ok) {
    throw Error(kErrDecode, "failed to parse prevResult",
                "a cniVersion " + args.conf.cni_version + " config cannot carry a " + version +
                    " prevResult");
  }
}

bool is_loopback(const nl::Address& a) {
  if (a.ip.is_v4()) return a.ip.bytes()[0] == 127;
  return a.ip == *IpAddr::parse("::1");
}

// The first address of a family, after checking that every address of it is a loopback one.
std::optional<Prefix> first_loopback(const std::vector<nl::Address>& addrs) {
  for (const auto& a : addrs) {
    if (!is_loopback(a)) {
      throw Error(kErrInternal, "loopback interface found with non-loopback address", a.ip.str());
    }
  }
  if (addrs.empty()) return std::nullopt;
  return addrs.front().cidr();
}

}  // namespace

Result cmd_add(const CmdArgs& args) {
  check_prev_result_version(args);
  NetnsFd ns = NetnsFd::open(args.netns);
  std::optional<Prefix> v4;
  std::optional<Prefix> v6;
  in_netns(ns, [&] {
    nl::Socket sock = nl::Socket::open();
    nl::Link lo = nl::require_link(sock, kLo);
    nl::set_link_up(sock, lo.ifindex);
    v4 = first_loopback(nl::list_addresses(sock, lo.ifindex, AF_INET));
    v6 = first_loopback(nl::list_addresses(sock, lo.ifindex, AF_INET6));
  });
  if (args.conf.prev_result) return *args.conf.prev_result;
  Result r;
  r.interfaces.push_back({kLo, "00:00:00:00:00:00", std::nullopt, args.netns, "", ""});
  for (const auto& p : {v4, v6}) {
    if (p) r.ips.push_back({*p, std::nullopt, 0});
  }
  return r;
}

std::string print(const Result& result, const CmdArgs& args) {
  const std::string& version = args.conf.cni_version;
  GoType type = args.conf.prev_result ? go_type_of(version) : GoType::k100;
  return go_result_text(result, version, type);
}

void cmd_del(const CmdArgs& args) {
  if (args.netns.empty()) return;
  std::optional<NetnsFd> ns = NetnsFd::open_if_exists(args.netns);
  if (!ns) return;
  in_netns(*ns, [&] {
    nl::Socket sock = nl::Socket::open();
    if (auto lo = nl::get_link(sock, kLo)) nl::set_link_down(sock, lo->ifindex);
  });
}

void cmd_check(const CmdArgs& args) {
  NetnsFd ns = NetnsFd::open(args.netns);
  in_netns(ns, [&] {
    nl::Socket sock = nl::Socket::open();
    if (!nl::require_link(sock, kLo).up()) {
      throw Error(kErrInternal, "loopback interface is down");
    }
  });
}

void cmd_status(const CmdArgs&) {}

void cmd_gc(const CmdArgs& args) { valid_attachments(args.conf.raw); }

}  // namespace cni::loopback
