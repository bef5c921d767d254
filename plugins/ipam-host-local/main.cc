// host-local: IPAM from a directory of lease files, a drop-in for the reference plugin.
// The verbs, each: parse the config, lock the network's lease directory, act. See README.md.
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/skel.h"
#include "plugins/ipam-host-local/allocator.h"
#include "plugins/ipam-host-local/config.h"
#include "plugins/ipam-host-local/lease_store.h"
#include "plugins/ipam-host-local/resolv_conf.h"

namespace {

using cni::hostlocal::Attachment;
using cni::hostlocal::Config;
using cni::hostlocal::LeaseStore;

constexpr int kErrNoLease = 101;

Attachment attachment(const cni::CmdArgs& args) { return {args.container_id, args.ifname}; }

cni::Result add(const cni::CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  cni::Result result;
  if (!config.resolv_conf.empty())
    result.dns = cni::hostlocal::read_resolv_conf(config.resolv_conf);
  LeaseStore store = LeaseStore::open(config.store_dir());
  result.ips = cni::hostlocal::allocate(store, config, attachment(args));
  result.routes = config.routes;
  return result;
}

void del(const cni::CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  if (auto store = LeaseStore::open_existing(config.store_dir())) {
    cni::hostlocal::release(*store, attachment(args));
  }
}

void check(const cni::CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  auto store = LeaseStore::open_existing(config.store_dir());
  if (!store || !cni::hostlocal::holds(*store, attachment(args))) {
    throw cni::Error(kErrNoLease,
                     "host-local: Failed to find address added by container " + args.container_id,
                     "no lease for ifname " + args.ifname + " in " + config.store_dir());
  }
}

void status(const cni::CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  try {
    LeaseStore store = LeaseStore::open(config.store_dir());
    store.check_writable();
    cni::hostlocal::check_available(store, config);
  } catch (const cni::Error& e) {
    if (e.code() != cni::kErrIo) throw;
    throw cni::Error(cni::kErrNotAvailable, "data dir is not writable: " + e.msg(), e.details());
  }
}

void gc(const cni::CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  if (!config.valid_attachments) {
    // cnitool's gc sends no list at all; releasing everything on that would be a disaster.
    spdlog::warn("GC: the config has no cni.dev/valid-attachments; releasing nothing");
    return;
  }
  if (auto store = LeaseStore::open_existing(config.store_dir())) {
    cni::hostlocal::collect_garbage(*store, *config.valid_attachments);
  }
}

}  // namespace

int main() {
  return cni::plugin_main({.add = add, .del = del, .check = check, .status = status, .gc = gc},
                          "host-local v" TETHER_VERSION " (tether)");
}
