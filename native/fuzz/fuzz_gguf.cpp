// libFuzzer target for the GGUF reader: every input either loads, each tensor's bytes inside
// the input and matching its type and shape, with every float and ggml block tensor decodable,
// or fails with ModelFormat (Resource when memory runs out). Anything else (another error
// code, another exception, a ggml assert, a sanitizer report) is a finding.
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/engine \
//     -Ivendor/ggml/include native/fuzz/fuzz_gguf.cpp native/engine/io/gguf.cpp \
//     native/engine/io/tensor_store.cpp native/engine/core/error.cpp -lggml-base
#include <cstdint>
#include <cstdlib>

#include "fuzz_support.h"
#include "ggml.h"
#include "io/gguf.h"

namespace {

// Bytes the tensor's type and shape call for; aborts (a finding) if the reader let through a
// type ggml does not know or an empty tensor (GGUF has none).
uint64_t expected_bytes(const sdn::TensorInfo& t) {
  if (t.nbytes == 0) std::abort();
  if (t.dtype != sdn::DType::Ggml) return static_cast<uint64_t>(t.numel()) * sdn::dtype_size(t.dtype);
  if (t.ggml_type < 0 || t.ggml_type >= GGML_TYPE_COUNT || t.shape.empty()) std::abort();
  const ggml_type type = static_cast<ggml_type>(t.ggml_type);
  const int64_t row = t.row_length();
  if (ggml_blck_size(type) <= 0 || row % ggml_blck_size(type) != 0) std::abort();
  return ggml_row_size(type, row) * static_cast<uint64_t>(t.numel() / row);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run_one(data, size, [](auto src) { return sdn::parse_gguf(src, "fuzz"); }, expected_bytes);
}
