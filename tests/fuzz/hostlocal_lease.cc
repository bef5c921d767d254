// host-local's lease directory as another writer (an older version, the reference plugin, a
// crash, a hand) may have left it: the input is its files, parts separated by "\n%%\n", each
// "<name>\n<content>". A name starting with "+" is an owner-index entry (".tether-owners"):
// "+<holder>/<ip>" one in a holder's directory, hard-linked to the lease <ip>, "+<ip>,<rest>"
// a flat one as tether wrote them before, hard-linked to the lease <ip>. Then what ADD, DEL, CHECK
// and GC do with it: scan with repair, the last-reserved hints, allocate, holds, release,
// collect_garbage.
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <set>

#include "common/error.h"
#include "common/files.h"
#include "plugins/ipam-host-local/allocator.h"
#include "plugins/ipam-host-local/config.h"
#include "plugins/ipam-host-local/lease_store.h"
#include "tests/fuzz/fuzz.h"

namespace {

using cni::hostlocal::Attachment;

const cni::hostlocal::Config& config() {
  static const cni::hostlocal::Config c = [] {
    auto conf = cni::NetConf::parse(R"({"cniVersion": "1.1.0", "name": "fuzznet",
      "type": "bridge", "ipam": {"type": "host-local", "ranges": [
        [{"subnet": "10.1.0.0/28"}],
        [{"subnet": "fd00::/124", "rangeStart": "fd00::4"}]]}})");
    return cni::hostlocal::Config::parse(conf, cni::CniArgs::parse(""));
  }();
  return c;
}

bool safe_name(std::string_view n) {
  return !n.empty() && n.size() <= 200 && n != "." && n != ".." && n != "lock" &&
         n.find('/') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tether_fuzz::quiet();
  static tether_fuzz::Scratch scratch;
  scratch.clear();
  const std::string dir = scratch.path() + "/fuzznet";
  const std::string index = scratch.path() + "/.tether-owners/fuzznet";
  cni::ensure_dir(dir, 0755);
  cni::ensure_dir(index, 0755);
  for (auto part : tether_fuzz::split_parts(tether_fuzz::as_text(data, size))) {
    auto [name, content] = tether_fuzz::first_line(part);
    if (!name.empty() && name[0] == '+') {
      name.remove_prefix(1);
      auto slash = name.find('/');
      std::string holder(slash == std::string_view::npos ? "" : name.substr(0, slash));
      std::string_view entry = slash == std::string_view::npos ? name : name.substr(slash + 1);
      if (!safe_name(entry) || (!holder.empty() && !safe_name(holder))) continue;
      std::string file(entry.substr(0, holder.empty() ? entry.find(',') : entry.size()));
      if (!safe_name(file)) continue;
      std::string at = index;
      if (!holder.empty()) {
        at += "/" + holder;
        ::mkdir(at.c_str(), 0755);
      }
      (void)::link((dir + "/" + file).c_str(), (at + "/" + std::string(entry)).c_str());
      continue;
    }
    if (!safe_name(name)) continue;
    try {
      cni::atomic_write(dir + "/" + std::string(name), content, 0600);
    } catch (const cni::Error&) {
    }
  }
  const Attachment who{"fuzz-container", "eth0"};
  std::optional<cni::hostlocal::LeaseStore> held(cni::hostlocal::LeaseStore::open(dir));
  std::set<cni::IpAddr> others;
  for (const auto& l : held->scan(true)) {
    // An empty lease file is what a writer killed between create and write leaves: no one's,
    // and ADD removes it and may take its address (allocator.cc live_leases).
    if (!l.held_by(who) && !l.owner.empty()) others.insert(l.ip);
  }
  (void)held->leases();
  (void)held->leased_addresses();
  for (size_t i = 0; i < 3; ++i) (void)held->last_reserved(i);
  try {
    auto ips = cni::hostlocal::allocate(*held, config(), who);
    tether_fuzz::require(cni::hostlocal::holds(*held, who), "allocate, then holds");
    // What the next call sees, sealed or not, is what a listing sees (one store at a time: each
    // holds the directory's flock).
    held.reset();
    held = cni::hostlocal::LeaseStore::open_existing(dir);
    tether_fuzz::require(held && cni::hostlocal::holds(*held, who), "allocate, then holds again");
    if (held->indexed()) {
      std::set<cni::IpAddr> listed, mine;
      for (const auto& l : held->scan(false)) {
        if (l.held_by(who)) listed.insert(l.ip);
      }
      for (const auto& l : held->leases_of(who)) mine.insert(l.ip);
      tether_fuzz::require(listed == mine, "the sealed index names what a listing does");
    }
    for (const auto& ip : ips) {
      tether_fuzz::require(!others.count(ip.address.addr()), "allocate takes no one's address",
                           ip.address.str());
    }
  } catch (const cni::Error& e) {
    tether_fuzz::require(e.code() > 0, "allocate error code", e.what());
  }
  if (!held) held = cni::hostlocal::LeaseStore::open(dir);
  // A legacy lease of the same container ID (outside the ranges, so that ADD went ahead)
  // outlives the first DEL: like the reference, DEL looks for legacy leases only when there is
  // no current one. The second releases it.
  if (cni::hostlocal::release(*held, who) > 0) (void)cni::hostlocal::release(*held, who);
  tether_fuzz::require(!cni::hostlocal::holds(*held, who), "release, then holds no more");
  held.reset();
  held = cni::hostlocal::LeaseStore::open(dir);
  tether_fuzz::require(!cni::hostlocal::holds(*held, who), "release, then holds no more, sealed");
  (void)cni::hostlocal::collect_garbage(*held, {Attachment{"c1", "eth0"}});
  return 0;
}
