// Zip index for PyTorch checkpoints. Validates every byte it uses: the archive comes from an
// untrusted file.
#include "io/zip_index.h"

#include <cstring>
#include <vector>

#include "io/checked.h"

namespace sdn {
namespace {

using namespace io_detail;

uint32_t crc32(const uint8_t* p, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

constexpr uint32_t kEocdSig = 0x06054b50, kZip64EocdSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;

// Entry names are never used as paths, but a name that would escape a folder marks a crafted
// archive, so it is refused outright.
void check_entry_name(const std::string& name) {
  bool ok = !name.empty() && name.find('\0') == std::string::npos && name[0] != '/' && name[0] != '\\' &&
            !(name.size() >= 2 && name[1] == ':');
  size_t start = 0;
  while (ok && start <= name.size()) {
    size_t end = name.find_first_of("/\\", start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0) ok = false;
    start = end + 1;
  }
  if (!ok) bad("zip entry name '" + shown(name) + "' is not a safe relative path");
}

}  // namespace

ZipIndex::ZipIndex(const ByteSource& file) : d_(file.data()), n_(file.size()) { parse(); }

const ZipEntry* ZipIndex::find(const std::string& name) const {
  const auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

bool ZipIndex::crc_matches(const ZipEntry& entry) const { return crc32(data(entry), entry.size) == entry.crc; }

void ZipIndex::parse() {
  if (n_ < 22) bad("not a zip archive (file too short); only PyTorch's zip checkpoint format is supported");
  // The end record sits at the very end unless a comment (at most 65535 bytes) follows it.
  // Prefer the record whose comment ends exactly at the end of the file: the comment itself
  // may contain the signature.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = n_ > 65557 ? n_ - 65557 : 0;
  for (uint64_t pos = n_ - 22 + 1; pos-- > lowest;) {
    if (rd32(d_ + pos) != kEocdSig) continue;
    const uint64_t end = pos + 22 + rd16(d_ + pos + 20);
    if (end == n_) {
      eocd = pos;
      break;
    }
    if (end < n_ && eocd == UINT64_MAX) eocd = pos;  // trailing bytes after the record
  }
  if (eocd == UINT64_MAX) {
    bad(n_ > 0 && d_[0] == 0x80 ? "legacy (pre-zip) PyTorch checkpoint format is not supported; re-save it with torch.save"
                                : "not a zip archive (no end of central directory record)");
  }
  const uint8_t* e = d_ + eocd;
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6), count_disk = rd16(e + 8), count = rd16(e + 10);
  uint64_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
  uint64_t cd_limit = eocd;  // the central directory must end before this

  if (eocd >= 20 && rd32(d_ + eocd - 20) == kZip64LocatorSig) {
    const uint8_t* loc = d_ + eocd - 20;
    const uint64_t z = rd64(loc + 8);
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1) bad("multi-disk zip archives are not supported");
    uint64_t z_end;
    if (!add_ok(z, 56, &z_end) || z_end > eocd - 20 || rd32(d_ + z) != kZip64EocdSig)
      bad("corrupt zip: bad ZIP64 end of central directory record");
    const uint8_t* r = d_ + z;
    disk = rd32(r + 16), cd_disk = rd32(r + 20), count_disk = rd64(r + 24), count = rd64(r + 32);
    cd_size = rd64(r + 40), cd_offset = rd64(r + 48);
    cd_limit = z;
  }
  if (disk != 0 || cd_disk != 0 || count_disk != count) bad("multi-disk zip archives are not supported");
  uint64_t cd_end;
  if (!add_ok(cd_offset, cd_size, &cd_end) || cd_end > cd_limit)
    bad("corrupt zip: central directory lies outside the file");
  if (count > cd_size / 46) bad("corrupt zip: central directory too small for its entry count");
  cd_offset_ = cd_offset;

  uint64_t p = cd_offset;
  for (uint64_t i = 0; i < count; ++i) p = parse_central(p, cd_end);
}

// Parses the central directory entry at p; returns the offset of the next one.
uint64_t ZipIndex::parse_central(uint64_t p, uint64_t cd_end) {
  if (cd_end - p < 46 || rd32(d_ + p) != kCentralSig) bad("corrupt zip: bad central directory entry");
  const uint8_t* c = d_ + p;
  const uint16_t flags = rd16(c + 8), method = rd16(c + 10);
  const uint32_t crc = rd32(c + 16);
  uint64_t csize = rd32(c + 20), usize = rd32(c + 24), local = rd32(c + 42), disk = rd16(c + 34);
  const uint64_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
  const uint64_t var_len = name_len + extra_len + comment_len;
  if (cd_end - p - 46 < var_len) bad("corrupt zip: central directory entry runs past its end");
  std::string name(reinterpret_cast<const char*>(c + 46), name_len);
  check_entry_name(name);

  // ZIP64 extra field: 8-byte values for whichever 32-bit fields hold the 0xFFFFFFFF marker,
  // in this order.
  const uint8_t* x = c + 46 + name_len;
  for (uint64_t off = 0; off + 4 <= extra_len;) {
    const uint16_t id = rd16(x + off), len = rd16(x + off + 2);
    if (off + 4 + len > extra_len) bad("corrupt zip: bad extra field in entry '" + shown(name) + "'");
    if (id == 0x0001) {
      const uint8_t* f = x + off + 4;
      uint64_t used = 0;
      auto take = [&](uint64_t* v, uint64_t marker, uint64_t width) {
        if (*v != marker) return;
        if (used + width > len) bad("corrupt zip: short ZIP64 field in entry '" + shown(name) + "'");
        *v = width == 8 ? rd64(f + used) : rd32(f + used);
        used += width;
      };
      take(&usize, 0xffffffffu, 8);
      take(&csize, 0xffffffffu, 8);
      take(&local, 0xffffffffu, 8);
      take(&disk, 0xffffu, 4);
    }
    off += 4 + len;
  }
  if (disk != 0) bad("multi-disk zip archives are not supported");
  if (flags & 1) bad("encrypted zip entries are not supported (" + shown(name) + ")");
  if (method != 0) bad("compressed zip entries are not supported (" + shown(name) + ")");
  if (csize != usize) bad("corrupt zip: stored entry '" + shown(name) + "' has mismatched sizes");

  // Local header: same name and method; its data must lie before the central directory.
  uint64_t lh_end;
  if (!add_ok(local, 30, &lh_end) || lh_end > cd_offset_ || rd32(d_ + local) != kLocalSig)
    bad("corrupt zip: bad local header for '" + shown(name) + "'");
  const uint8_t* l = d_ + local;
  const uint16_t lflags = rd16(l + 6);
  const uint64_t lname = rd16(l + 26), lextra = rd16(l + 28);
  uint64_t data_start, data_end;
  if (lname != name_len || !add_ok(lh_end, lname + lextra, &data_start) || data_start > cd_offset_ ||
      std::memcmp(l + 30, name.data(), name_len) != 0 || rd16(l + 8) != method)
    bad("corrupt zip: local header does not match the central directory for '" + shown(name) + "'");
  // Without a data descriptor (flag bit 3) the local header repeats CRC and sizes.
  if (!(lflags & 8)) {
    const uint32_t lc = rd32(l + 18), lu = rd32(l + 22);
    if (rd32(l + 14) != crc || (lc != 0xffffffffu && lc != csize) || (lu != 0xffffffffu && lu != usize))
      bad("corrupt zip: local header does not match the central directory for '" + shown(name) + "'");
  }
  if (!add_ok(data_start, usize, &data_end) || data_end > cd_offset_)
    bad("corrupt zip: data of '" + shown(name) + "' lies outside the file");

  if (!entries_.emplace(std::move(name), ZipEntry{data_start, usize, crc}).second)
    bad("corrupt zip: duplicate entry '" + shown(std::string(reinterpret_cast<const char*>(c + 46), name_len)) + "'");
  return p + 46 + var_len;
}

}  // namespace sdn
