// Reader for GGUF files (ggml's format, versions 2 and 3). Everything in the file is validated
// here, before any ggml call that could assert: header counts, every key-value entry, every
// tensor's shape, type and byte range. Tensors are views into the memory-mapped file.
#pragma once

#include <memory>
#include <string>

#include "io/tensor_store.h"

namespace sdn {

// Longest tensor name GGUF files may hold, in bytes. Stable Diffusion names run past ggml's
// default GGML_MAX_NAME of 64 ("model.diffusion_model.output_blocks.1.1.transformer_blocks.0.
// attn2.to_out.0.weight" has 83 bytes); stable-diffusion.cpp builds ggml with GGML_MAX_NAME 128
// and writes such names, so we read and write up to 127. Names are our TensorStore keys only:
// nothing hands them to ggml's own GGUF reader.
constexpr size_t kGgufMaxTensorName = 127;

// Maps `path` and parses it. Throws FileAccess for a path that cannot be read and ModelFormat,
// naming the field, key or tensor, for anything malformed.
// A conv kernel kept unfolded (nn/weight_types.h) is stored as its [OC, IC·KH·KW] matrix, with
// the metadata key kUnfoldedKernelKey + <tensor name> = "OC,IC,KH,KW": its shape as a kernel,
// which read_gguf gives back (TensorInfo::unfolded_row). convertModel writes these keys.
inline constexpr const char* kUnfoldedKernelKey = "sdnode.unfolded.";

TensorStore read_gguf(const std::string& path);

// Parses GGUF bytes (the reader's core, and the fuzzing entry point). The store keeps `bytes`
// alive; `name_for_errors` is what error messages call the file.
TensorStore parse_gguf(std::shared_ptr<ByteSource> bytes, const std::string& name_for_errors);

}  // namespace sdn
