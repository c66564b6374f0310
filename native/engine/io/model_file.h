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

// Throws FileAccess for paths that cannot be read and ModelFormat for unknown or malformed
// contents.
ModelFile open_model_file(const std::string& path);

}  // namespace sdn
