#include "plugins/portmap/cmd.h"

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "plugins/portmap/config.h"
#include "plugins/portmap/plan.h"
#include "plugins/portmap/portmap.h"

namespace cni::portmap {
namespace {

Attachment attachment_of(const CmdArgs& args) {
  return {args.conf.name, args.container_id, args.ifname};
}

const Result& prev_result(const CmdArgs& args) {
  if (!args.conf.prev_result) {
    throw Error(kErrInvalidConfig, "portmap must be called as a chained plugin",
                "prevResult is missing");
  }
  return *args.conf.prev_result;
}

}  // namespace

Result cmd_add(const CmdArgs& args) {
  const Result& prev = prev_result(args);
  Config config = Config::parse(args.conf);
  // No mappings: pass the result through without touching netfilter (plugins#464).
  if (config.mappings.empty()) return prev;
  ContainerAddrs addrs = container_addresses(prev, args.ifname);
  Plan plan = make_plan(config, addrs);
  if (plan.groups.empty()) return prev;
  publish(config, attachment_of(args), plan);
  if (plan.route_localnet) enable_route_localnet(addrs.v4->addr());
  return prev;
}

void cmd_del(const CmdArgs& args) {
  // What to remove comes from the attachment's state, not from the mappings or prevResult.
  unpublish(Config::parse(args.conf), attachment_of(args));
}

void cmd_check(const CmdArgs& args) {
  const Result& prev = prev_result(args);
  Config config = Config::parse(args.conf);
  if (config.mappings.empty()) return;
  Plan plan = make_plan(config, container_addresses(prev, args.ifname));
  if (!plan.groups.empty()) verify(config, plan);
}

void cmd_status(const CmdArgs& args) { check_ready(Config::parse(args.conf)); }

void cmd_gc(const CmdArgs& args) {
  Config config = Config::parse(args.conf);
  // cnitool sends no list at all, and then nothing can be judged stale.
  auto valid = valid_attachments(args.conf.raw);
  if (!valid) {
    spdlog::info("portmap: GC without a list of valid attachments: nothing removed");
    return;
  }
  collect_garbage(config, args.conf.name, *valid);
}

}  // namespace cni::portmap
