// libFuzzer target for the safetensors reader: every input either loads, with each tensor's
// bytes inside the input, or fails with ModelFormat (Resource when memory runs out). Anything
// else — another error code, another exception, a sanitizer report — is a finding.
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/engine \
//     -Ivendor/ggml/include native/fuzz/fuzz_safetensors.cpp native/engine/io/safetensors.cpp \
//     native/engine/io/tensor_store.cpp native/engine/core/error.cpp -lggml-base
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace {

// An exact-size heap copy, so that AddressSanitizer sees any read past the input's end.
class InputBytes : public sdn::ByteSource {
 public:
  InputBytes(const uint8_t* data, size_t size) : bytes_(data, data + size) {}
  const uint8_t* data() const override { return bytes_.data(); }
  size_t size() const override { return bytes_.size(); }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src = std::make_shared<InputBytes>(data, size);
  const uint8_t* begin = src->data();
  const uint8_t* end = begin + src->size();
  try {
    sdn::TensorStore store = sdn::parse_safetensors(src, "fuzz");
    unsigned sum = 0;
    std::vector<float> f32;
    std::vector<uint16_t> f16;
    for (const sdn::TensorInfo& t : store.tensors()) {
      if (t.nbytes && (t.data < begin || t.data > end || static_cast<size_t>(end - t.data) < t.nbytes)) std::abort();
      if (static_cast<uint64_t>(t.numel()) * sdn::dtype_size(t.dtype) != t.nbytes) std::abort();
      for (size_t k = 0; k < t.nbytes; ++k) sum += t.data[k];
      switch (t.dtype) {
        case sdn::DType::F64:
        case sdn::DType::F32:
        case sdn::DType::F16:
        case sdn::DType::BF16:
        case sdn::DType::F8_E4M3:
        case sdn::DType::F8_E5M2:
          f32.resize(static_cast<size_t>(t.numel()));
          f16.resize(static_cast<size_t>(t.numel()));
          sdn::TensorStore::to_f32(t, f32.data());
          sdn::TensorStore::to_f16(t, f16.data());
          break;
        default: break;
      }
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const sdn::Error& e) {
    if (e.code() != sdn::ErrorCode::ModelFormat && e.code() != sdn::ErrorCode::Resource) std::abort();
  }
  return 0;
}
