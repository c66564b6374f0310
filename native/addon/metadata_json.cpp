#include "metadata_json.h"

namespace sdnode {

namespace {

constexpr size_t kEntriesPerChunk = 1024;
constexpr size_t kBytesPerChunk = 256 * 1024;

void append_json_string(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

}  // namespace

MetadataForJs metadata_for_js(const std::map<std::string, std::string>& metadata) {
  MetadataForJs out;
  std::vector<std::string>& chunks = out.chunks;
  std::string current;
  size_t entries = 0, kept = 0, total_bytes = 0;
  for (const auto& [key, value] : metadata) {
    const size_t bytes = key.size() + value.size();
    if (kept == kMetadataMaxKeys || value.size() > kMetadataMaxValueBytes || total_bytes + bytes > kMetadataMaxTotalBytes) {
      ++out.omitted;
      continue;
    }
    ++kept;
    total_bytes += bytes;
    current += entries == 0 ? '[' : ',';
    append_json_string(current, key);
    current += ',';
    append_json_string(current, value);
    if (++entries == kEntriesPerChunk || current.size() >= kBytesPerChunk) {
      chunks.push_back(std::move(current) + "]");
      current.clear();
      entries = 0;
    }
  }
  if (entries > 0) chunks.push_back(std::move(current) + "]");
  return out;
}

}  // namespace sdnode
