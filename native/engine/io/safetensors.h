// safetensors files: an 8-byte little-endian header length N, N bytes of UTF-8 JSON naming
// each tensor's dtype, shape and byte range, then the tensor bytes. Validation follows the
// rules of the reference implementation (huggingface/safetensors), with a strict JSON parser of
// our own: the byte ranges must tile the data section exactly, and duplicate keys are refused.
#pragma once

#include <memory>
#include <string>

#include "io/tensor_store.h"

namespace sdn {

// Maps the file and returns views of its tensors, in file order, and `__metadata__` as the
// store's metadata. Throws FileAccess for paths that cannot be read, ModelFormat for malformed
// contents (the message starts with the path in quotes and names the field or tensor) and
// Resource when memory runs out.
TensorStore read_safetensors(const std::string& path);

// The same from bytes already in memory (fuzzing, readers of containers). The store keeps
// `bytes` alive; `name_for_errors` takes the place of the path in messages.
TensorStore parse_safetensors(std::shared_ptr<ByteSource> bytes, const std::string& name_for_errors);

}  // namespace sdn
