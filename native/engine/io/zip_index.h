// Index of a zip archive's entries, for PyTorch checkpoints: stored (uncompressed) entries only,
// since torch never compresses, with ZIP64 support. Every offset and size is validated against
// the file, so an entry's bytes can be read without further checks.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "io/tensor_store.h"

namespace sdn {

struct ZipEntry {
  uint64_t offset = 0;  // of the entry's bytes in the file
  uint64_t size = 0;
  uint32_t crc = 0;
};

class ZipIndex {
 public:
  // Reads the central directory of `file`, which must outlive the index. Throws ModelFormat
  // for anything but a well-formed single-disk archive of unencrypted stored entries with safe
  // relative names.
  explicit ZipIndex(const ByteSource& file);

  const ZipEntry* find(const std::string& name) const;
  const std::unordered_map<std::string, ZipEntry>& entries() const { return entries_; }
  // The entry's bytes: entry.size of them.
  const uint8_t* data(const ZipEntry& entry) const { return d_ + entry.offset; }
  // Only checked on request: hashing every storage of a large checkpoint would cost a full read.
  bool crc_matches(const ZipEntry& entry) const;

 private:
  void parse();
  uint64_t parse_central(uint64_t p, uint64_t cd_end);

  const uint8_t* d_;
  uint64_t n_;
  uint64_t cd_offset_ = 0;
  std::unordered_map<std::string, ZipEntry> entries_;
};

}  // namespace sdn
