// portmap: publishes container ports on the host through nftables maps, a drop-in for the
// reference plugin. The verbs, each: parse the config, then act on the table. See README.md.
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/skel.h"
#include "plugins/portmap/config.h"
#include "plugins/portmap/plan.h"
#include "plugins/portmap/portmap.h"

namespace {

namespace pm = cni::portmap;

pm::Attachment attachment(const cni::CmdArgs& args) {
  return {args.conf.name, args.container_id, args.ifname};
}

const cni::Result& prev_result(const cni::CmdArgs& args) {
  if (!args.conf.prev_result) {
    throw cni::Error(cni::kErrInvalidConfig, "portmap must be called as a chained plugin",
                     "prevResult is missing");
  }
  return *args.conf.prev_result;
}

cni::Result add(const cni::CmdArgs& args) {
  const cni::Result& prev = prev_result(args);
  pm::Config config = pm::Config::parse(args.conf);
  // No mappings: pass the result through without touching netfilter (plugins#464).
  if (config.mappings.empty()) return prev;
  pm::ContainerAddrs addrs = pm::container_addresses(prev, args.ifname);
  pm::Plan plan = pm::make_plan(config, addrs);
  if (plan.groups.empty()) return prev;
  pm::publish(config, attachment(args), plan);
  if (plan.route_localnet) pm::enable_route_localnet(addrs.v4->addr());
  return prev;
}

void del(const cni::CmdArgs& args) {
  // What to remove comes from the attachment's state, not from the mappings or prevResult.
  pm::unpublish(pm::Config::parse(args.conf), attachment(args));
}

void check(const cni::CmdArgs& args) {
  const cni::Result& prev = prev_result(args);
  pm::Config config = pm::Config::parse(args.conf);
  if (config.mappings.empty()) return;
  pm::Plan plan = pm::make_plan(config, pm::container_addresses(prev, args.ifname));
  if (!plan.groups.empty()) pm::verify(config, plan);
}

void gc(const cni::CmdArgs& args) {
  pm::Config config = pm::Config::parse(args.conf);
  // cnitool sends no list at all, and then nothing can be judged stale.
  auto valid = cni::valid_attachments(args.conf.raw);
  if (!valid) {
    spdlog::info("portmap: GC without a list of valid attachments: nothing removed");
    return;
  }
  pm::collect_garbage(config, args.conf.name, *valid);
}

void status(const cni::CmdArgs& args) { pm::check_ready(pm::Config::parse(args.conf)); }

}  // namespace

int main() {
  cni::Verbs verbs;
  verbs.add = add;
  verbs.del = del;
  verbs.check = check;
  verbs.status = status;
  verbs.gc = gc;
  return cni::plugin_main(verbs, "portmap v" TETHER_VERSION " (tether)");
}
