// File metadata for JS as a few JSON texts instead of one object of N properties: built on the
// job's thread, so a file of 200k metadata keys does not hold the JS thread while they become
// JS values; lib/metadata.ts parses the texts one at a time between event-loop turns.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace sdnode {

// JSON arrays ["key", "value", "key", "value", …] of at most 1024 entries or about 256 KiB each,
// in key order. Bytes that are not UTF-8 pass through (JS reads them as U+FFFD, as before).
std::vector<std::string> metadata_json_chunks(const std::map<std::string, std::string>& metadata);

}  // namespace sdnode
