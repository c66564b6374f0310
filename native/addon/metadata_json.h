// File metadata for JS as a few JSON texts instead of one object of N properties: built on the
// job's thread, so a file of 200k metadata keys does not hold the JS thread while they become
// JS values; lib/metadata.ts parses the texts one at a time between event-loop turns.
//
// What JS gets is bounded whatever the file holds: a JS object of 200k keys costs the thread
// tens of ms in garbage collection alone, however it is built. Real checkpoints and LoRAs hold
// tens of keys (kohya's tag lists and modelspec thumbnails are the large values, well under the
// value limit); entries past the limits are left out and counted, never silently.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace sdnode {

// At most this many entries, …
constexpr size_t kMetadataMaxKeys = 16384;
// … none whose value is longer than this, …
constexpr size_t kMetadataMaxValueBytes = 4 * 1024 * 1024;
// … and keys and values of this many bytes in all.
constexpr size_t kMetadataMaxTotalBytes = 16 * 1024 * 1024;

struct MetadataForJs {
  // JSON arrays ["key", "value", "key", "value", …] of at most 1024 entries or about 256 KiB
  // each, in key order. Bytes that are not UTF-8 pass through (JS reads them as U+FFFD).
  std::vector<std::string> chunks;
  // Entries past the limits above, not in `chunks`.
  size_t omitted = 0;
};

MetadataForJs metadata_for_js(const std::map<std::string, std::string>& metadata);

}  // namespace sdnode
