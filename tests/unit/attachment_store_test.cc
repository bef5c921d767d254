#include "common/attachment_store.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "tests/unit/temp_dir.h"

using cni::AttachmentFiles;
using cni::AttachmentKey;
using cni::json;

namespace {

using tether_test::TempDir;

struct Thing {
  std::string id;
  json to_json() const { return {{"id", id}}; }
  static Thing from_json(const json& j) {
    if (!j.is_object() || !j.contains("id")) throw cni::Error(cni::kErrDecode, "not a thing");
    return {j.at("id").get<std::string>()};
  }
};

using Store = cni::AttachmentStore<Thing>;

bool exists(const std::string& p) { return std::filesystem::exists(p); }

}  // namespace

TEST_CASE("attachment store: save, load, list per network, remove") {
  TempDir dir;
  Store store(dir.path + "/", AttachmentFiles::Durability::kDurable);
  const AttachmentKey a{"net1", "c1", "eth0"};
  const AttachmentKey b{"net1", "c2", "net@1"};  // '@' is a valid interface name character
  const AttachmentKey c{"net2", "c1", "eth0"};
  CHECK(store.path(a) == dir.path + "/net1/c1:eth0.json");
  CHECK_FALSE(store.load(a));
  CHECK(store.list().empty());
  store.save(a, Thing{"a"});
  store.save(b, Thing{"b"});
  store.save(c, Thing{"c"});
  struct stat st {};
  REQUIRE(::stat((dir.path + "/net1").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat(store.path(a).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(store.load(a)->id == "a");
  CHECK(store.load_checked(b)->id == "b");
  store.save(a, Thing{"a2"});
  CHECK(store.load(a)->id == "a2");
  // Temp files of an atomic write in progress and foreign names are not attachments.
  cni::atomic_write(dir.path + "/net1/.c9:eth0.json.tmp-1-2", "{");
  cni::atomic_write(dir.path + "/net1/README", "x");
  cni::atomic_write(dir.path + "/lock", "");
  CHECK(store.list("net1") == std::vector<AttachmentKey>{a, b});
  CHECK(store.list("net3").empty());
  CHECK(store.list() == std::vector<AttachmentKey>{a, b, c});
  CHECK(store.remove(a));
  CHECK_FALSE(store.remove(a));
  CHECK_FALSE(exists(store.path(a)));
  CHECK(store.list() == std::vector<AttachmentKey>{b, c});
}

TEST_CASE("attachment store: a corrupt file is absent to load() and error 100 to load_checked()") {
  TempDir dir;
  Store store(dir.path, AttachmentFiles::Durability::kKernelLifetime);
  const AttachmentKey k{"n", "c", "eth0"};
  cni::ensure_dir(dir.path + "/n", 0700);
  for (const char* text : {"", "{not json", R"({"other":1})", "[]"}) {
    CAPTURE(text);
    cni::atomic_write(store.path(k), text);
    CHECK_FALSE(store.load(k));
    try {
      store.load_checked(k);
      FAIL("a corrupt file passed load_checked");
    } catch (const cni::Error& e) {
      CHECK(e.code() == cni::kErrStateCorrupt);
      CHECK(e.msg() == "state corrupt");
      CHECK(e.details().find(store.path(k)) != std::string::npos);
    }
    // Still listed, so that DEL and GC find it and remove it.
    CHECK(store.list("n") == std::vector<AttachmentKey>{k});
  }
  CHECK(store.remove(k));
  CHECK_FALSE(store.load_checked(k));
}

TEST_CASE("attachment store: older layouts are read, listed, moved on save and removed") {
  TempDir dir;
  const AttachmentKey k{"net1", "c1", "eth0"};
  const AttachmentKey k2{"net2", "c2", "eth1"};

  // portmap 0.1: <root>/<network>/<containerID>@<ifname>.json
  Store pm(dir.path + "/pm", AttachmentFiles::Durability::kKernelLifetime,
           AttachmentFiles::Legacy::kAtInNetworkDir);
  cni::ensure_dir(dir.path + "/pm/net1", 0700);
  const std::string old_pm = dir.path + "/pm/net1/c1@eth0.json";
  cni::atomic_write(old_pm, R"({"id":"old"})");
  CHECK(pm.list("net1") == std::vector<AttachmentKey>{k});
  CHECK(pm.list() == std::vector<AttachmentKey>{k});
  CHECK(pm.load(k)->id == "old");
  pm.save(k, Thing{"new"});
  CHECK_FALSE(exists(old_pm));
  CHECK(pm.load(k)->id == "new");
  cni::atomic_write(old_pm, R"({"id":"old"})");
  CHECK(pm.list("net1") == std::vector<AttachmentKey>{k});  // both layouts: one key
  CHECK(pm.remove(k));
  CHECK_FALSE(exists(old_pm));
  CHECK_FALSE(exists(pm.path(k)));
  // A layout a store was not told about is foreign.
  cni::atomic_write(old_pm, R"({"id":"old"})");
  CHECK(Store(dir.path + "/pm").list().empty());

  // dns-sidecar 0.1: <root>/<network>@<containerID>@<ifname>.json
  Store dns(dir.path + "/dns", AttachmentFiles::Durability::kKernelLifetime,
            AttachmentFiles::Legacy::kFlatAt);
  cni::ensure_dir(dir.path + "/dns", 0700);
  cni::atomic_write(dir.path + "/dns/net1@c1@eth0.json", R"({"id":"one"})");
  cni::atomic_write(dir.path + "/dns/net2@c2@eth1.json", R"({"id":"two"})");
  cni::atomic_write(dir.path + "/dns/.net2@c3@eth1.json.tmp-1", "{");
  CHECK(dns.list() == std::vector<AttachmentKey>{k, k2});
  CHECK(dns.list("net2") == std::vector<AttachmentKey>{k2});
  CHECK(dns.load(k2)->id == "two");
  CHECK(dns.remove(k2));
  CHECK_FALSE(exists(dir.path + "/dns/net2@c2@eth1.json"));
  dns.save(k, Thing{"moved"});
  CHECK_FALSE(exists(dir.path + "/dns/net1@c1@eth0.json"));
  CHECK(dns.list() == std::vector<AttachmentKey>{k});
  CHECK(dns.load(k)->id == "moved");
}
