#include "common/build_id.h"

#include <doctest/doctest.h>
#include <elf.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/unit/temp_dir.h"

namespace {

std::vector<uint8_t> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write(const std::string& path, const std::vector<uint8_t>& data) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// One note: header, name padded and description padded to `align`.
void note(std::vector<uint8_t>& out, uint32_t type, const std::string& name,
          const std::vector<uint8_t>& desc, size_t align) {
  Elf64_Nhdr h{static_cast<Elf64_Word>(name.size() + 1), static_cast<Elf64_Word>(desc.size()),
               type};
  const auto* p = reinterpret_cast<const uint8_t*>(&h);
  out.insert(out.end(), p, p + sizeof(h));
  out.insert(out.end(), name.begin(), name.end());
  out.push_back(0);
  while (out.size() % align != 0) out.push_back(0);
  out.insert(out.end(), desc.begin(), desc.end());
  while (out.size() % align != 0) out.push_back(0);
}

}  // namespace

TEST_CASE("gnu_build_id: this test binary's, a copy's, and nothing of what carries none") {
  tether_test::TempDir dir;
  auto self = cni::gnu_build_id("/proc/self/exe");
  REQUIRE(self);
  CHECK(self->size() == 40);  // --build-id=sha1 (CMakeLists.txt)
  CHECK(self->find_first_not_of("0123456789abcdef") == std::string::npos);
  std::vector<uint8_t> data = bytes_of("/proc/self/exe");
  write(dir.path + "/copy", data);
  CHECK(cni::gnu_build_id(dir.path + "/copy") == self);
  // Its ID bytes changed: another binary.
  std::vector<uint8_t> id;
  for (size_t i = 0; i < self->size(); i += 2) {
    id.push_back(static_cast<uint8_t>(std::stoi(self->substr(i, 2), nullptr, 16)));
  }
  auto at = std::search(data.begin(), data.end(), id.begin(), id.end());
  REQUIRE(at != data.end());
  at[static_cast<long>(id.size()) - 1] ^= 1;
  write(dir.path + "/other", data);
  auto other = cni::gnu_build_id(dir.path + "/other");
  REQUIRE(other);
  CHECK(*other != *self);
  CHECK(other->substr(0, 38) == self->substr(0, 38));
  // Cut short before its program headers, a script, an empty file, nothing at all.
  write(dir.path + "/short", std::vector<uint8_t>(data.begin(), data.begin() + 100));
  CHECK_FALSE(cni::gnu_build_id(dir.path + "/short"));
  std::ofstream(dir.path + "/script") << "#!/bin/sh\nexec /usr/lib/cni/host-local \"$@\"\n";
  CHECK_FALSE(cni::gnu_build_id(dir.path + "/script"));
  std::ofstream(dir.path + "/empty").flush();
  CHECK_FALSE(cni::gnu_build_id(dir.path + "/empty"));
  CHECK_FALSE(cni::gnu_build_id(dir.path + "/missing"));
  CHECK_FALSE(cni::gnu_build_id(dir.path));
}

TEST_CASE("gnu_build_id_in_notes: the GNU build ID among other notes, at 4 and 8 alignment") {
  const std::vector<uint8_t> id = {0xde, 0xad, 0xbe, 0xef, 0x01};
  for (size_t align : {4, 8}) {
    CAPTURE(align);
    std::vector<uint8_t> notes;
    note(notes, NT_GNU_PROPERTY_TYPE_0, "GNU", {1, 2, 3, 4, 5, 6, 7, 8}, align);
    note(notes, NT_GNU_BUILD_ID, "Go", {9, 9}, align);  // another owner's note of that type
    note(notes, NT_GNU_BUILD_ID, "GNU", id, align);
    CHECK(cni::gnu_build_id_in_notes(notes, align) == "deadbeef01");
    // Every cut of the segment finds the ID or nothing, never reads past its end.
    for (size_t cut = 0; cut < notes.size(); ++cut) {
      CAPTURE(cut);
      std::vector<uint8_t> part(notes.begin(), notes.begin() + static_cast<long>(cut));
      auto got = cni::gnu_build_id_in_notes(part, align);
      CHECK((!got || *got == "deadbeef01"));
    }
  }
  std::vector<uint8_t> notes;
  note(notes, NT_GNU_BUILD_ID, "GNU", id, 4);
  CHECK_FALSE(cni::gnu_build_id_in_notes(notes, 16));  // no such alignment
  // A name or description size beyond the segment.
  std::vector<uint8_t> huge = notes;
  Elf64_Word big = 0xfffffff0;
  std::memcpy(huge.data(), &big, sizeof(big));
  CHECK_FALSE(cni::gnu_build_id_in_notes(huge, 4));
  huge = notes;
  std::memcpy(huge.data() + 4, &big, sizeof(big));
  CHECK_FALSE(cni::gnu_build_id_in_notes(huge, 4));
  // An empty ID is none.
  notes.clear();
  note(notes, NT_GNU_BUILD_ID, "GNU", {}, 4);
  CHECK_FALSE(cni::gnu_build_id_in_notes(notes, 4));
}
