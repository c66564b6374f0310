// Any model file to one TensorStore: the format is told from the first bytes, not the name.
#pragma once

#include <string>

#include "io/tensor_store.h"

namespace sdn {

enum class FileFormat { Safetensors, Gguf, TorchZip };

const char* file_format_name(FileFormat f);

// The stored type as users know it: "F16", "BF16", or a ggml block type such as "Q8_0".
std::string tensor_type_name(const TensorInfo& t);

struct ModelFile {
  FileFormat format = FileFormat::Safetensors;
  uint64_t file_size = 0;
  TensorStore store;
};

// A fingerprint of a tensor's values, independent of how the file stores them: FNV-1a 64 over
// the values as little-endian f32 (quantized types dequantized, integer types as stored
// bytes). Two files hold bit-identical f32/f16 weights exactly when these agree.
uint64_t tensor_checksum(const TensorInfo& t);

// Throws FileAccess for paths that cannot be read and ModelFormat for unknown or malformed
// contents.
ModelFile open_model_file(const std::string& path);

}  // namespace sdn
