#include "io/model_file.h"

#include <cctype>
#include <cstring>

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
