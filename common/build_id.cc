#include "common/build_id.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <vector>

#include "common/files.h"

namespace cni {

namespace {

// Generous bounds: a linker writes a handful of program headers and notes of a few dozen bytes.
constexpr size_t kMaxPhdrs = 64;
constexpr size_t kMaxNoteSegment = 64 * 1024;

bool pread_all(int fd, void* buf, size_t len, uint64_t off) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return true;
}

size_t round_up(size_t n, size_t align) { return (n + align - 1) / align * align; }

}  // namespace

std::optional<std::string> gnu_build_id_in_notes(std::span<const uint8_t> notes, size_t align) {
  if (align != 4 && align != 8) return std::nullopt;
  static constexpr char kOwner[] = "GNU";  // with its NUL: namesz 4
  // The name follows the 12-byte header; the description and the next note start at the next
  // multiple of `align` from the segment's start.
  size_t off = 0;
  while (notes.size() - off >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr h;
    std::memcpy(&h, notes.data() + off, sizeof(h));
    const size_t name_at = off + sizeof(h);
    if (h.n_namesz > notes.size() - name_at) return std::nullopt;
    const size_t desc_at = round_up(name_at + h.n_namesz, align);
    if (desc_at > notes.size() || h.n_descsz > notes.size() - desc_at) return std::nullopt;
    if (h.n_type == NT_GNU_BUILD_ID && h.n_namesz == sizeof(kOwner) &&
        std::memcmp(notes.data() + name_at, kOwner, sizeof(kOwner)) == 0 && h.n_descsz > 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      std::string hex;
      for (uint8_t b : notes.subspan(desc_at, h.n_descsz)) {
        hex += kHex[b >> 4];
        hex += kHex[b & 0xf];
      }
      return hex;
    }
    off = round_up(desc_at + h.n_descsz, align);
    if (off >= notes.size()) break;
  }
  return std::nullopt;
}

std::optional<std::string> gnu_build_id(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return std::nullopt;
  Elf64_Ehdr eh;
  if (!pread_all(fd.get(), &eh, sizeof(eh), 0)) return std::nullopt;
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > kMaxPhdrs) {
    return std::nullopt;
  }
  std::array<Elf64_Phdr, kMaxPhdrs> ph;
  if (!pread_all(fd.get(), ph.data(), eh.e_phnum * sizeof(Elf64_Phdr), eh.e_phoff)) {
    return std::nullopt;
  }
  std::vector<uint8_t> notes;
  for (size_t i = 0; i < eh.e_phnum; ++i) {
    const Elf64_Phdr& p = ph[i];
    if (p.p_type != PT_NOTE || p.p_filesz == 0 || p.p_filesz > kMaxNoteSegment) continue;
    notes.resize(p.p_filesz);
    if (!pread_all(fd.get(), notes.data(), notes.size(), p.p_offset)) return std::nullopt;
    if (auto id = gnu_build_id_in_notes(notes, p.p_align == 8 ? 8 : 4)) return id;
  }
  return std::nullopt;
}

}  // namespace cni
