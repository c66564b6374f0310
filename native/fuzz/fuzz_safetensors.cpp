// libFuzzer target for the safetensors reader: every input either loads, with each tensor's
// bytes inside the input, or fails with ModelFormat (Resource when memory runs out). Anything
// else — another error code, another exception, a sanitizer report — is a finding.
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/engine \
//     -Ivendor/ggml/include native/fuzz/fuzz_safetensors.cpp native/engine/io/safetensors.cpp \
//     native/engine/io/tensor_store.cpp native/engine/core/error.cpp -lggml-base
#include <cstdint>

#include "fuzz_support.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run_one(
      data, size, [](auto src) { return sdn::parse_safetensors(src, "fuzz"); },
      [](const sdn::TensorInfo& t) { return static_cast<uint64_t>(t.numel()) * sdn::dtype_size(t.dtype); });
}
