#include "io/model_file.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ggml.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"

namespace sdn {

const char* file_format_name(FileFormat f) {
  switch (f) {
    case FileFormat::Safetensors: return "safetensors";
    case FileFormat::Gguf: return "gguf";
    case FileFormat::TorchZip: return "torch";
  }
  return "?";
}

std::string tensor_type_name(const TensorInfo& t) {
  if (t.dtype == DType::Ggml) {
    std::string name = ggml_type_name(static_cast<ggml_type>(t.ggml_type));
    for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
  }
  return dtype_name(t.dtype);
}

namespace {

// A header length that fits the file, or a JSON object right after it. Files that pass go to
// the safetensors reader, which then names exactly what is wrong with them.
bool looks_like_safetensors(const uint8_t* p, size_t n) {
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | p[i];
  if (header <= n - 8) return true;
  return n > 8 && (p[8] == '{' || std::isspace(p[8]));
}

}  // namespace

uint64_t tensor_checksum(const TensorInfo& t) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  };
  const bool floating = t.dtype == DType::F64 || t.dtype == DType::F32 || t.dtype == DType::F16 ||
                        t.dtype == DType::BF16 || t.dtype == DType::F8_E4M3 || t.dtype == DType::F8_E5M2 ||
                        t.dtype == DType::Ggml;
  if (!floating) {
    mix(t.data, t.nbytes);
    return h;
  }
  // In slices, so a multi-GB tensor never needs a second full-size copy.
  constexpr int64_t kSlice = 1 << 20;
  std::vector<float> values;
  const int64_t n = t.numel();
  const int64_t row = t.row_length();
  for (int64_t start = 0; start < n;) {
    // Block formats decode whole rows; plain types any run of elements.
    int64_t count = std::min(n - start, std::max<int64_t>(row, kSlice / std::max<int64_t>(row, 1) * row));
    TensorInfo part = t;
    part.shape = {count};
    if (t.dtype == DType::Ggml) {
      part.shape = {count / row, row};
      const size_t row_bytes = t.nbytes / static_cast<size_t>(n / row);
      part.data = t.data + static_cast<size_t>(start / row) * row_bytes;
      part.nbytes = static_cast<size_t>(count / row) * row_bytes;
    } else {
      part.data = t.data + static_cast<size_t>(start) * dtype_size(t.dtype);
      part.nbytes = static_cast<size_t>(count) * dtype_size(t.dtype);
    }
    values.resize(static_cast<size_t>(count));
    TensorStore::to_f32(part, values.data());
    for (float v : values) {
      uint8_t b[4];
      std::memcpy(b, &v, 4);  // little-endian hosts only, as the readers are
      mix(b, 4);
    }
    start += count;
  }
  return h;
}

ModelFile open_model_file(const std::string& path) {
  std::shared_ptr<ByteSource> bytes = map_file(path);
  const uint8_t* p = bytes->data();
  const size_t n = bytes->size();
  ModelFile file;
  file.file_size = n;
  // GGUF starts with its magic, zip files (torch) with a local header "PK\3\4"; safetensors
  // with a little-endian header length followed by '{' (after optional whitespace).
  if (n >= 4 && std::memcmp(p, "GGUF", 4) == 0) {
    file.format = FileFormat::Gguf;
    file.store = parse_gguf(bytes, path);
  } else if (n >= 4 && std::memcmp(p, "PK\x03\x04", 4) == 0) {
    file.format = FileFormat::TorchZip;
    file.store = read_torch_checkpoint(path);
  } else if (n >= 8 && !looks_like_safetensors(p, n)) {
    fail(ErrorCode::ModelFormat, "'" + path + "': not a model file (neither safetensors, GGUF nor a PyTorch zip checkpoint)");
  } else if (n >= 8) {
    file.format = FileFormat::Safetensors;
    file.store = parse_safetensors(bytes, path);
  } else {
    fail(ErrorCode::ModelFormat, "'" + path + "': too short to be a model file (" + std::to_string(n) + " bytes)");
  }
  return file;
}

}  // namespace sdn
