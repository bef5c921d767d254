// Overlay specs on disk (common/overlay.h): what the bridge plugin writes and the agent reads.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>

#include "common/error.h"
#include "common/files.h"
#include "common/overlay.h"

namespace ov = cni::overlay;
using cni::IpAddr;
using cni::Prefix;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tether-ovspec-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("overlay: VTEP MAC and device name are derived, stable and valid") {
  CHECK(ov::vtep_mac(*IpAddr::parse("192.168.50.101")).str() == "02:74:c0:a8:32:65");
  CHECK(ov::vtep_mac(*IpAddr::parse("fd00::a:b0c:d0e")).str() == "02:74:0b:0c:0d:0e");
  CHECK(ov::default_device(4242) == "tvx4242");
  CHECK(ov::default_device(16777215).size() <= 15);
}

TEST_CASE("overlay: spec JSON round trip, validation naming the field") {
  ov::Overlay o = ov::Overlay::from_json(
      nlohmann::json::parse(
          R"({"vni":4242,"local":"192.168.50.101","ranges":["10.32.5.0/12","10.32.0.0/12"]})"),
      "overlay");
  CHECK(o.port == 4789);
  CHECK(o.device == "tvx4242");
  REQUIRE(o.ranges.size() == 1);
  CHECK(o.ranges[0].str() == "10.32.0.0/12");
  CHECK(ov::Overlay::from_json(o.to_json(), "x").to_json() == o.to_json());
  CHECK(o.carries(*Prefix::parse("10.33.4.0/24")));
  CHECK_FALSE(o.carries(*Prefix::parse("10.48.4.0/24")));
  CHECK_FALSE(o.carries(*Prefix::parse("10.0.0.0/8")));  // wider than the range

  auto bad = [](const char* text, const char* key) {
    try {
      ov::Overlay::from_json(nlohmann::json::parse(text), "overlay");
      FAIL("accepted " << text);
    } catch (const cni::Error& e) {
      CHECK(e.code() == cni::kErrInvalidConfig);
      CHECK_MESSAGE(std::string(e.what()).find(key) != std::string::npos, e.what());
    }
  };
  bad(R"({"port":4789})", "overlay.vni");
  bad(R"({"vni":0})", "overlay.vni");
  bad(R"({"vni":16777216})", "overlay.vni");
  bad(R"({"vni":"x"})", "overlay.vni");
  bad(R"({"vni":1,"port":70000})", "overlay.port");
  bad(R"({"vni":1,"local":"nope"})", "overlay.local");
  bad(R"({"vni":1,"ranges":["10.0.0.0"]})", "overlay.ranges");
  bad(R"({"vni":1,"device":"a/b"})", "overlay.device");
}

TEST_CASE("overlay: specs saved per VNI, ranges of one VNI merged, all loaded") {
  TempDir dir;
  ov::Overlay o;
  o.vni = 4242;
  o.local = *IpAddr::parse("192.168.50.101");
  o.ranges = {*Prefix::parse("10.32.0.0/12")};
  ov::save_overlay(dir.path, o);
  o.ranges = {*Prefix::parse("10.64.0.0/16")};
  ov::Overlay merged = ov::save_overlay(dir.path, o);
  CHECK(merged.ranges.size() == 2);
  ov::Overlay other = o;
  other.vni = 4343;
  ov::save_overlay(dir.path, other);
  cni::atomic_write(dir.path + "/17.json", "not json");

  std::vector<ov::Overlay> all = ov::load_overlays(dir.path);  // the bad file is skipped
  REQUIRE(all.size() == 2);
  auto loaded = ov::load_overlay(dir.path, 4242);
  REQUIRE(loaded.has_value());
  CHECK(loaded->to_json() == merged.to_json());
  CHECK(loaded->device == "tvx4242");

  // A new underlay address replaces the spec rather than merging with the old one.
  o.local = *IpAddr::parse("192.168.50.102");
  CHECK(ov::save_overlay(dir.path, o).ranges.size() == 1);

  CHECK(ov::remove_overlay(dir.path, 4343));
  CHECK_FALSE(ov::remove_overlay(dir.path, 4343));
  CHECK_FALSE(ov::load_overlay(dir.path, 4343).has_value());
  CHECK(ov::load_overlays("/nonexistent/tether-ov").empty());
}
