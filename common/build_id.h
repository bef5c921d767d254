#pragma once
// The GNU build ID of an ELF file: the note (NT_GNU_BUILD_ID) the linker writes from a hash of
// everything it linked, which strip and install keep. Two files with one build ID are one
// linked binary; common/invoke.h runs a delegate in-process on that ground.
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace cni {

// The build ID in lowercase hex, or nullopt when `path` is not a readable 64-bit ELF file that
// carries one (a script, a truncated file, a binary linked without --build-id).
std::optional<std::string> gnu_build_id(const std::string& path);

// The build ID among the notes of one PT_NOTE segment whose entries are aligned to `align`
// bytes (4 or 8); nullopt when none is well formed. Exposed for the fuzzer.
std::optional<std::string> gnu_build_id_in_notes(std::span<const uint8_t> notes, size_t align);

}  // namespace cni
