#include "plugins/ipam-host-local/cmd.h"

#include <spdlog/spdlog.h>

#include "common/dns_settings.h"
#include "common/error.h"
#include "plugins/ipam-host-local/allocator.h"
#include "plugins/ipam-host-local/cluster_blocks.h"
#include "plugins/ipam-host-local/config.h"
#include "plugins/ipam-host-local/lease_store.h"
#include "plugins/ipam-host-local/resolv_conf.h"

namespace cni::hostlocal {
namespace {

Attachment attachment_of(const CmdArgs& args) { return {args.container_id, args.ifname}; }

}  // namespace

Result cmd_add(const CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  Result result;
  Dns host_file;
  if (!config.resolv_conf.empty()) host_file = read_resolv_conf(config.resolv_conf);
  result.dns = effective_dns(host_file, config.network_dns, config.runtime_dns);
  LeaseStore store = LeaseStore::open(config.store_dir());
  if (config.cluster) {
    // Cluster mode: the same allocation, inside the blocks this host holds (cluster_blocks.h).
    result.ips = allocate(store, with_blocks(store, config), attachment_of(args));
  } else {
    result.ips = allocate(store, config, attachment_of(args));
  }
  result.routes = config.routes;
  return result;
}

void cmd_del(const CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  if (auto store = LeaseStore::open_existing(config.store_dir())) {
    release(*store, attachment_of(args));
  }
}

void cmd_check(const CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  auto store = LeaseStore::open_existing(config.store_dir());
  if (!store || !holds(*store, attachment_of(args))) {
    throw Error(kErrNoLease,
                "host-local: Failed to find address added by container " + args.container_id,
                "no lease for ifname " + args.ifname + " in " + config.store_dir());
  }
}

void cmd_status(const CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  try {
    LeaseStore store = LeaseStore::open(config.store_dir());
    store.check_writable();
    if (config.cluster) {
      check_cluster_available(store, config);
    } else {
      check_available(store, config);
    }
  } catch (const Error& e) {
    if (e.code() != kErrIo) throw;
    throw Error(kErrNotAvailable, "data dir is not writable: " + e.msg(), e.details());
  }
}

void cmd_gc(const CmdArgs& args) {
  Config config = Config::parse(args.conf, args.args);
  if (!config.valid_attachments) {
    // cnitool's gc sends no list at all; releasing everything on that would be a disaster.
    spdlog::warn("GC: the config has no cni.dev/valid-attachments; releasing nothing");
    return;
  }
  if (auto store = LeaseStore::open_existing(config.store_dir())) {
    collect_garbage(*store, *config.valid_attachments);
    if (config.cluster && config.release_empty_blocks) release_empty_blocks(*store, config);
  }
}

Verbs verbs() {
  return {
      .add = cmd_add,
      .del = cmd_del,
      .check = cmd_check,
      .status = cmd_status,
      .gc = cmd_gc,
  };
}

}  // namespace cni::hostlocal
