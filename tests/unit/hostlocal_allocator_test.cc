// host-local allocation against a real lease directory in a temp dir: order, round-robin,
// requested addresses, duplicates, exhaustion with nothing written, DEL/CHECK/GC, STATUS.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/files.h"
#include "plugins/ipam-host-local/allocator.h"
#include "plugins/ipam-host-local/resolv_conf.h"

namespace fs = std::filesystem;
using cni::hostlocal::Attachment;
using cni::hostlocal::Config;
using cni::hostlocal::LeaseStore;
using json = nlohmann::json;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/hostlocal-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

Config config(const TempDir& dir, json ipam, json extra = json::object()) {
  ipam["dataDir"] = dir.path.string();
  json conf = {{"cniVersion", "1.1.0"}, {"name", "net1"}, {"type", "host-local"}, {"ipam", ipam}};
  conf.update(extra);
  return Config::parse(cni::NetConf::parse(conf.dump()), cni::CniArgs::parse(""));
}

// Every file of the lease directory with its content.
std::map<std::string, std::string> snapshot(const Config& c) {
  std::map<std::string, std::string> out;
  for (const auto& name : cni::list_dir(c.store_dir())) {
    out[name] = cni::read_file(c.store_dir() + "/" + name).value_or("?");
  }
  return out;
}

std::vector<std::string> add(const Config& c, const std::string& id,
                             const std::string& ifname = "eth0") {
  LeaseStore store = LeaseStore::open(c.store_dir());
  std::vector<std::string> out;
  for (const auto& ip : cni::hostlocal::allocate(store, c, {id, ifname})) {
    out.push_back(ip.address.str() + " gw " + ip.gateway->str());
  }
  return out;
}

int add_error(const Config& c, const std::string& id, std::string* msg = nullptr) {
  try {
    add(c, id);
  } catch (const cni::Error& e) {
    if (msg) *msg = e.msg();
    return e.code();
  }
  return 0;
}

size_t del(const Config& c, const std::string& id, const std::string& ifname = "eth0") {
  LeaseStore store = LeaseStore::open(c.store_dir());
  return cni::hostlocal::release(store, {id, ifname});
}

const json kSmall = {{"subnet", "10.5.0.0/29"}};  // .2-.6 allocatable

}  // namespace

TEST_CASE("hostlocal allocate: first lease after the gateway, files as the reference writes them") {
  TempDir d;
  Config c = config(d, kSmall);
  CHECK(add(c, "ctr-a") == std::vector<std::string>{"10.5.0.2/29 gw 10.5.0.1"});
  auto files = snapshot(c);
  CHECK(files == std::map<std::string, std::string>{{"10.5.0.2", "ctr-a\r\neth0"},
                                                    {"last_reserved_ip.0", "10.5.0.2"},
                                                    {"lock", ""}});
  CHECK((fs::status(c.store_dir() + "/10.5.0.2").permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));
}

TEST_CASE("hostlocal allocate: round-robin does not reuse a released address at once") {
  TempDir d;
  Config c = config(d, kSmall);
  CHECK(add(c, "a")[0].starts_with("10.5.0.2/"));
  CHECK(add(c, "b")[0].starts_with("10.5.0.3/"));
  CHECK(del(c, "a") == 1);
  CHECK(add(c, "c")[0].starts_with("10.5.0.4/"));
  CHECK(add(c, "d")[0].starts_with("10.5.0.5/"));
  CHECK(add(c, "e")[0].starts_with("10.5.0.6/"));
  CHECK(add(c, "f")[0].starts_with("10.5.0.2/"));  // wrapped; .3 is still b's
  auto before = snapshot(c);
  std::string msg;
  CHECK(add_error(c, "g", &msg) == 50);
  CHECK(msg ==
        "failed to allocate for range 0: no IP addresses available in range set: "
        "10.5.0.1-10.5.0.6");
  CHECK(snapshot(c) == before);  // nothing written, hint untouched
  LeaseStore store = LeaseStore::open(c.store_dir());
  CHECK_THROWS_AS(cni::hostlocal::check_available(store, c), cni::Error);
}

TEST_CASE("hostlocal allocate: dual stack gives one address per set; failure releases all") {
  TempDir d;
  json ipam = {{"ranges", json::array({json::array({{{"subnet", "10.6.0.0/30"}}}),
                                       json::array({{{"subnet", "fd00:6::/120"}}})})}};
  Config c = config(d, ipam);
  CHECK(add(c, "a") ==
        std::vector<std::string>{"10.6.0.2/30 gw 10.6.0.1", "fd00:6::2/120 gw fd00:6::1"});
  auto before = snapshot(c);
  // The v4 set (one address) is full: the v6 set must not keep a lease or a new hint.
  CHECK(add_error(c, "b") == 50);
  CHECK(snapshot(c) == before);
  CHECK(del(c, "a") == 2);
  CHECK(snapshot(c).size() == 3);  // lock and the two hints
}

TEST_CASE("hostlocal allocate: requested addresses") {
  TempDir d;
  json ipam = {{"subnet", "10.7.0.0/24"}};
  Config c = config(d, ipam, {{"runtimeConfig", {{"ips", json::array({"10.7.0.50"})}}}});
  CHECK(add(c, "a") == std::vector<std::string>{"10.7.0.50/24 gw 10.7.0.1"});
  CHECK(snapshot(c).at("last_reserved_ip.0") == "10.7.0.50");
  auto before = snapshot(c);
  std::string msg;
  CHECK(add_error(c, "b", &msg) == 50);
  CHECK(msg ==
        "failed to allocate for range 0: requested IP address 10.7.0.50 is not available "
        "in range set 10.7.0.1-10.7.0.254");
  Config gw = config(d, ipam, {{"runtimeConfig", {{"ips", json::array({"10.7.0.1"})}}}});
  CHECK(add_error(gw, "b", &msg) == 7);
  CHECK(msg == "failed to allocate for range 0: requested ip 10.7.0.1 is subnet's gateway");
  Config outside = config(d, ipam, {{"runtimeConfig", {{"ips", json::array({"10.8.0.1"})}}}});
  CHECK(add_error(outside, "b", &msg) == 7);
  CHECK(msg == "failed to allocate all requested IPs: 10.8.0.1");
  Config two =
      config(d, ipam, {{"runtimeConfig", {{"ips", json::array({"10.7.0.8", "10.7.0.9"})}}}});
  CHECK(add_error(two, "b", &msg) == 7);
  CHECK(msg == "failed to allocate all requested IPs: 10.7.0.9");
  CHECK(snapshot(c) == before);
}

TEST_CASE("hostlocal allocate: an attachment holding an address in a set is refused") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  auto before = snapshot(c);
  std::string msg;
  CHECK(add_error(c, "a", &msg) == cni::hostlocal::kErrDuplicateAllocation);
  CHECK(msg ==
        "failed to allocate for range 0: 10.5.0.2 has been allocated to a, duplicate "
        "allocation is not allowed");
  CHECK(snapshot(c) == before);
  CHECK(add(c, "a", "eth1").size() == 1);  // another interface of the container is fine
}

TEST_CASE("hostlocal release, holds and legacy ID-only leases") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a", "eth0");
  add(c, "a", "eth1");
  cni::ensure_dir(c.store_dir());
  cni::atomic_write(c.store_dir() + "/10.5.0.6", "old\n", 0600);  // a pre-0.x lease: ID only
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK(cni::hostlocal::holds(store, {"a", "eth1"}));
    CHECK(cni::hostlocal::holds(store, {"old", "eth0"}));
    CHECK_FALSE(cni::hostlocal::holds(store, {"b", "eth0"}));
  }
  CHECK(del(c, "a", "eth1") == 1);
  CHECK(del(c, "a", "eth1") == 0);  // idempotent
  CHECK(del(c, "old", "eth0") == 1);
  CHECK(del(c, "nobody") == 0);
  CHECK(snapshot(c).count("10.5.0.2") == 1);
}

TEST_CASE("hostlocal GC keeps valid attachments, lock, hints; cleans stale temp files") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  add(c, "b");
  add(c, "c");
  cni::atomic_write(c.store_dir() + "/10.5.0.6", "legacy", 0600);
  cni::atomic_write(c.store_dir() + "/.10.5.0.5.tmp-1-2", "x", 0600);  // a killed writer's
  cni::atomic_write(c.store_dir() + "/notes", "keep", 0600);           // not a lease name
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK(cni::hostlocal::collect_garbage(store, {{"b", "eth0"}, {"legacy", "eth9"}}) == 2);
  }
  auto files = snapshot(c);
  CHECK(files == std::map<std::string, std::string>{{"10.5.0.3", "b\r\neth0"},
                                                    {"10.5.0.6", "legacy"},
                                                    {"last_reserved_ip.0", "10.5.0.4"},
                                                    {"lock", ""},
                                                    {"notes", "keep"}});
  LeaseStore store = LeaseStore::open(c.store_dir());
  CHECK(cni::hostlocal::collect_garbage(store, {}) == 2);
}

TEST_CASE("hostlocal GC releases a lease whose owner is not UTF-8") {
  // Found by the hostlocal_lease fuzz target: the owner, logged as JSON, made GC throw
  // nlohmann's type_error for every call on the network while the file stayed.
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  cni::atomic_write(c.store_dir() + "/10.5.0.5", "\xfe\xff\r\neth0", 0600);
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK(cni::hostlocal::collect_garbage(store, {{"a", "eth0"}}) == 1);
  }
  CHECK(snapshot(c) == std::map<std::string, std::string>{{"10.5.0.2", "a\r\neth0"},
                                                          {"last_reserved_ip.0", "10.5.0.2"},
                                                          {"lock", ""}});
}

TEST_CASE("hostlocal ADD removes empty lease files and reuses their address") {
  TempDir d;
  Config c = config(d, kSmall);
  cni::ensure_dir(c.store_dir());
  cni::atomic_write(c.store_dir() + "/10.5.0.2", "", 0600);  // a writer killed before writing
  cni::atomic_write(c.store_dir() + "/.10.5.0.3.tmp-7-7", "a\r\neth0", 0600);
  CHECK(add(c, "a") == std::vector<std::string>{"10.5.0.2/29 gw 10.5.0.1"});
  CHECK(snapshot(c) == std::map<std::string, std::string>{{"10.5.0.2", "a\r\neth0"},
                                                          {"last_reserved_ip.0", "10.5.0.2"},
                                                          {"lock", ""}});
}

namespace {

std::string index_dir(const Config& c) { return c.data_dir + "/.tether-owners/" + c.network; }

// A directory as {name: inode}; for the owner index, {"<holder>/<ip>": inode}, the seal left
// out (seal() below).
std::map<std::string, ino_t> inodes(const std::string& dir) {
  std::map<std::string, ino_t> out;
  for (const auto& e : cni::list_dir_inodes(dir)) {
    if (e.name == "sealed") continue;
    if (e.type == DT_DIR) {
      for (const auto& f : cni::list_dir_inodes(dir + "/" + e.name)) {
        out[e.name + "/" + f.name] = f.ino;
      }
    } else {
      out[e.name] = e.ino;
    }
  }
  return out;
}

// The seal's text, and the lease directory's mtime in the same form; "" when there is none.
std::string seal(const Config& c) { return cni::read_file(index_dir(c) + "/sealed").value_or(""); }
std::string mtime(const Config& c) {
  struct stat st {};
  REQUIRE(::stat(c.store_dir().c_str(), &st) == 0);
  return std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

TEST_CASE("hostlocal owner index: one hard link per lease, outside the lease directory") {
  TempDir d;
  Config c =
      config(d, {{"ranges", {{{{"subnet", "10.5.0.0/29"}}}, {{{"subnet", "fd00:5::/120"}}}}}});
  add(c, "a");
  add(c, "b", "eth1");
  auto leases = inodes(c.store_dir());
  CHECK(inodes(index_dir(c)) ==
        std::map<std::string, ino_t>{{"eth0:a/10.5.0.2", leases.at("10.5.0.2")},
                                     {"eth1:b/10.5.0.3", leases.at("10.5.0.3")},
                                     {"eth0:a/fd00:5::2", leases.at("fd00:5::2")},
                                     {"eth1:b/fd00:5::3", leases.at("fd00:5::3")}});
  // The lease directory is what the reference writes, nothing more.
  CHECK(snapshot(c).size() == 4 + 2 + 1);
  CHECK(del(c, "a") == 2);
  CHECK(inodes(index_dir(c)).size() == 2);
  CHECK(del(c, "b", "eth1") == 2);
  CHECK(inodes(index_dir(c)).empty());
  CHECK(cni::list_dir(index_dir(c)) == std::vector<std::string>{"sealed"});  // holders' dirs gone
}

TEST_CASE("hostlocal owner index: leases without an entry are read and adopted") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  // As the reference (or an older tether) writes them: no index entry.
  cni::atomic_write(c.store_dir() + "/10.5.0.4", "r\r\neth0", 0600);
  cni::atomic_write(c.store_dir() + "/10.5.0.5", "old", 0600);  // legacy: never indexed
  std::string msg;
  CHECK(add_error(c, "r", &msg) == cni::hostlocal::kErrDuplicateAllocation);
  CHECK(inodes(index_dir(c)).at("eth0:r/10.5.0.4") == inodes(c.store_dir()).at("10.5.0.4"));
  CHECK(inodes(index_dir(c)).count("eth0:old/10.5.0.5") == 0);
  CHECK(add(c, "b") == std::vector<std::string>{"10.5.0.3/29 gw 10.5.0.1"});
  CHECK(add(c, "e") == std::vector<std::string>{"10.5.0.6/29 gw 10.5.0.1"});  // skips .4, .5
  CHECK(del(c, "r") == 1);
  CHECK(del(c, "old", "eth3") == 1);
  CHECK(inodes(index_dir(c)).count("eth0:r/10.5.0.4") == 0);
}

TEST_CASE("hostlocal owner index: an entry is trusted only while it is the lease's inode") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  // The reference releases a's lease and hands the address to x: a new file, a new inode.
  cni::remove_file(c.store_dir() + "/10.5.0.2");
  cni::atomic_write(c.store_dir() + "/10.5.0.2", "x\r\neth0", 0600);
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK_FALSE(cni::hostlocal::holds(store, {"a", "eth0"}));
    CHECK(cni::hostlocal::holds(store, {"x", "eth0"}));
  }
  CHECK(del(c, "a") == 0);
  CHECK(inodes(index_dir(c)) ==
        std::map<std::string, ino_t>{{"eth0:x/10.5.0.2", inodes(c.store_dir()).at("10.5.0.2")}});
  CHECK(add(c, "a") == std::vector<std::string>{"10.5.0.3/29 gw 10.5.0.1"});
  // A lease removed under the index's feet leaves an entry that no longer counts.
  cni::remove_file(c.store_dir() + "/10.5.0.3");
  CHECK(add(c, "a") == std::vector<std::string>{"10.5.0.4/29 gw 10.5.0.1"});
  CHECK(inodes(index_dir(c)).count("eth0:a/10.5.0.3") == 0);
  CHECK(del(c, "a") == 1);
  CHECK(del(c, "x") == 1);
  CHECK(inodes(index_dir(c)).empty());
}

TEST_CASE("hostlocal owner index: names that cannot be indexed are read instead") {
  TempDir d;
  Config c = config(d, kSmall);
  std::string long_id(300, 'z');
  CHECK(
      cni::hostlocal::index_entry_name(*cni::IpAddr::parse("10.5.0.2"), {long_id, "eth0"}).empty());
  CHECK(cni::hostlocal::index_entry_name(*cni::IpAddr::parse("10.5.0.2"), {"a", "x:y"}).empty());
  add(c, long_id);
  CHECK(inodes(index_dir(c)).empty());
  CHECK(add_error(c, long_id) == cni::hostlocal::kErrDuplicateAllocation);
  CHECK(del(c, long_id) == 1);
  // A NUL in a lease another writer left: the path would end there, at a holder's directory.
  using namespace std::string_literals;
  CHECK(
      cni::hostlocal::index_entry_name(*cni::IpAddr::parse("10.5.0.2"), {"a\0x"s, "eth0"}).empty());
  CHECK(cni::hostlocal::index_entry_name(*cni::IpAddr::parse("10.5.0.2"), {"a", "eth\0"s}).empty());
  cni::atomic_write(c.store_dir() + "/10.5.0.6", "a\0x\r\neth0"s, 0600);
  add(c, "a");
  CHECK(inodes(index_dir(c)).count("eth0:a/10.5.0.3") == 1);
  CHECK(del(c, "a") == 1);
  CHECK(fs::exists(c.store_dir() + "/10.5.0.6"));
}

TEST_CASE("hostlocal owner index: the flat entries of an older tether are replaced") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  add(c, "b");
  // As tether wrote the index before the holders' directories, unsealed.
  const std::string idx = index_dir(c);
  fs::remove_all(idx);
  cni::ensure_dir(idx);
  REQUIRE(::link((c.store_dir() + "/10.5.0.2").c_str(), (idx + "/10.5.0.2,eth0:a").c_str()) == 0);
  CHECK(add(c, "e") == std::vector<std::string>{"10.5.0.4/29 gw 10.5.0.1"});
  const auto leases = inodes(c.store_dir());
  CHECK(inodes(idx) == std::map<std::string, ino_t>{{"eth0:a/10.5.0.2", leases.at("10.5.0.2")},
                                                    {"eth0:b/10.5.0.3", leases.at("10.5.0.3")},
                                                    {"eth0:e/10.5.0.4", leases.at("10.5.0.4")}});
  CHECK(seal(c) == mtime(c));
}

TEST_CASE("hostlocal seal: a sealed store is read through the holder's directory alone") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  CHECK(seal(c) == mtime(c));
  // The seal: a time in the past, which no later change of the directory can stamp.
  CHECK(std::stoll(seal(c)) < static_cast<long long>(::time(nullptr)));
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK(store.indexed());
    CHECK(cni::hostlocal::holds(store, {"a", "eth0"}));
    CHECK_FALSE(cni::hostlocal::holds(store, {"a", "eth1"}));
  }
  // A lease written as the reference writes it, then the directory's mtime put back to the
  // seal's: a sealed call does not list the directory, so it does not see that lease's holder
  // (this is what the seal spares; the next case shows no real writer can do this).
  const std::string sealed = seal(c);
  cni::atomic_write(c.store_dir() + "/10.5.0.5", "r\r\neth0", 0600);
  const auto dot = sealed.find('.');
  const timespec t[2] = {{0, UTIME_OMIT},
                         {std::stoll(sealed.substr(0, dot)), std::stol(sealed.substr(dot + 1))}};
  REQUIRE(::utimensat(AT_FDCWD, c.store_dir().c_str(), t, 0) == 0);
  REQUIRE(seal(c) == mtime(c));
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK(store.indexed());
    CHECK_FALSE(cni::hostlocal::holds(store, {"r", "eth0"}));
  }
  // Its address is still taken: a sealed ADD probes the names it would take.
  CHECK(add(c, "b") == std::vector<std::string>{"10.5.0.3/29 gw 10.5.0.1"});
  CHECK(add(c, "e") == std::vector<std::string>{"10.5.0.4/29 gw 10.5.0.1"});
  CHECK(add(c, "f") == std::vector<std::string>{"10.5.0.6/29 gw 10.5.0.1"});
}

TEST_CASE("hostlocal seal: any change of the lease directory by another writer breaks it") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  REQUIRE(seal(c) == mtime(c));
  // The reference's ADD and DEL, under the lock as it takes it: the directory's mtime moves.
  cni::atomic_write(c.store_dir() + "/10.5.0.4", "r\r\neth0", 0600);
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK_FALSE(store.indexed());
    CHECK(cni::hostlocal::holds(store, {"r", "eth0"}));
  }
  CHECK(add_error(c, "r") == cni::hostlocal::kErrDuplicateAllocation);
  // That call listed and adopted r's lease; a failed call does not seal.
  CHECK(inodes(index_dir(c)).at("eth0:r/10.5.0.4") == inodes(c.store_dir()).at("10.5.0.4"));
  CHECK(seal(c) != mtime(c));
  CHECK(add(c, "b") == std::vector<std::string>{"10.5.0.3/29 gw 10.5.0.1"});
  CHECK(seal(c) == mtime(c));
  cni::remove_file(c.store_dir() + "/10.5.0.2");  // the reference's DEL of a
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK_FALSE(store.indexed());
    CHECK_FALSE(cni::hostlocal::holds(store, {"a", "eth0"}));
  }
  CHECK(del(c, "r") == 1);
  CHECK(seal(c) == mtime(c));
  CHECK(inodes(index_dir(c)) ==
        std::map<std::string, ino_t>{{"eth0:b/10.5.0.3", inodes(c.store_dir()).at("10.5.0.3")}});
  // A crash's leftover (a temp file) breaks it too, and is removed by the next call.
  cni::atomic_write(c.store_dir() + "/.10.5.0.6.tmp-9-9", "x\r\neth0", 0600);
  CHECK(add(c, "e") == std::vector<std::string>{"10.5.0.4/29 gw 10.5.0.1"});
  CHECK_FALSE(fs::exists(c.store_dir() + "/.10.5.0.6.tmp-9-9"));
  CHECK(seal(c) == mtime(c));
}

TEST_CASE("hostlocal seal: a lease that cannot be indexed leaves the store unsealed") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  REQUIRE(!seal(c).empty());
  add(c, std::string(300, 'z'));
  CHECK(seal(c).empty());
  CHECK_FALSE(LeaseStore::open(c.store_dir()).indexed());
  CHECK(add_error(c, std::string(300, 'z')) == cni::hostlocal::kErrDuplicateAllocation);
  CHECK(seal(c).empty());
  CHECK(del(c, std::string(300, 'z')) == 1);
  CHECK(seal(c) == mtime(c));  // every lease indexed again
  // A legacy lease (the container ID alone) is never indexed either.
  cni::atomic_write(c.store_dir() + "/10.5.0.6", "old", 0600);
  add(c, "b");
  CHECK(seal(c).empty());
  CHECK(del(c, "old", "eth9") == 1);
  CHECK(seal(c) == mtime(c));
}

TEST_CASE("hostlocal last_reserved_ip and the seal: overwritten in place, exactly") {
  TempDir d;
  Config c = config(d, kSmall);
  add(c, "a");
  const std::string hint = c.store_dir() + "/last_reserved_ip.0";
  const ino_t first = inodes(c.store_dir()).at("last_reserved_ip.0");
  auto seal_inode = [&] {
    struct stat st {};
    REQUIRE(::lstat((index_dir(c) + "/sealed").c_str(), &st) == 0);
    return st.st_ino;
  };
  const ino_t first_seal = seal_inode();
  // A longer hint than the next (another writer's, out of the set): it is replaced exactly.
  cni::overwrite_in_place(hint, "10.5.0.200");
  CHECK(cni::read_file(hint) == "10.5.0.200");
  CHECK(del(c, "a") == 1);
  CHECK(add(c, "b") == std::vector<std::string>{"10.5.0.2/29 gw 10.5.0.1"});  // range start
  CHECK(cni::read_file(hint) == "10.5.0.2");
  CHECK(add(c, "e") == std::vector<std::string>{"10.5.0.3/29 gw 10.5.0.1"});
  CHECK(cni::read_file(hint) == "10.5.0.3");
  // Never a new inode: no rename, no temp file, and the store is sealed as before.
  CHECK(inodes(c.store_dir()).at("last_reserved_ip.0") == first);
  CHECK(seal(c) == mtime(c));
  CHECK(seal_inode() == first_seal);  // the seal's stamp too
  struct stat st {};
  REQUIRE(::lstat(hint.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("hostlocal lease names: only the reference's spelling of an address is a lease") {
  TempDir d;
  Config c = config(d, kSmall);
  // Other spellings of 10.5.0.2 and of an IPv6 address: the reference would still create
  // "10.5.0.2", so they keep nothing from being handed out, sealed or listed.
  cni::ensure_dir(c.store_dir(), 0755);
  cni::atomic_write(c.store_dir() + "/::ffff:10.5.0.2", "x\r\neth0", 0600);
  cni::atomic_write(c.store_dir() + "/fD00::0:04", "y\r\neth0", 0600);
  CHECK(cni::hostlocal::lease_address("10.5.0.2") == cni::IpAddr::parse("10.5.0.2"));
  CHECK(cni::hostlocal::lease_address("fd00::4") == cni::IpAddr::parse("fd00::4"));
  CHECK_FALSE(cni::hostlocal::lease_address("fD00::0:04"));
  CHECK_FALSE(cni::hostlocal::lease_address("::ffff:10.5.0.2"));
  CHECK_FALSE(cni::hostlocal::lease_address("010.5.0.2"));
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK(store.scan(true).empty());
    CHECK(store.leased_addresses().empty());
    CHECK_FALSE(cni::hostlocal::holds(store, {"x", "eth0"}));
  }
  CHECK(add(c, "a") == std::vector<std::string>{"10.5.0.2/29 gw 10.5.0.1"});  // listed
  REQUIRE(seal(c) == mtime(c));
  CHECK(del(c, "a") == 1);
  CHECK(add(c, "b") == std::vector<std::string>{"10.5.0.3/29 gw 10.5.0.1"});  // sealed
  // Never touched: not ours, and GC leaves what is not a lease.
  {
    LeaseStore store = LeaseStore::open(c.store_dir());
    CHECK(cni::hostlocal::collect_garbage(store, {}) == 1);
  }
  CHECK(snapshot(c).count("::ffff:10.5.0.2") == 1);
  CHECK(snapshot(c).count("fD00::0:04") == 1);
}

TEST_CASE("hostlocal resolvConf parsing") {
  auto dns = cni::hostlocal::parse_resolv_conf(
      "# comment\n; other\nnameserver 1.1.1.1\n  nameserver   8.8.8.8 \ndomain example.com\n"
      "search a.example b.example\noptions ndots:2 edns0\nsearch c\nbogus\n");
  CHECK(dns.nameservers == std::vector<std::string>{"1.1.1.1", "8.8.8.8"});
  CHECK(dns.domain == "example.com");
  CHECK(dns.search == std::vector<std::string>{"a.example", "b.example", "c"});
  CHECK(dns.options == std::vector<std::string>{"ndots:2", "edns0"});
}
