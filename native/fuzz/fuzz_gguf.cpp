// libFuzzer target for the GGUF reader: every input either loads, each tensor's bytes inside
// the input and matching its type and shape, with every float and ggml block tensor decodable,
// or fails with ModelFormat (Resource when memory runs out). Anything else (another error
// code, another exception, a ggml assert, a sanitizer report) is a finding.
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/engine \
//     -Ivendor/ggml/include native/fuzz/fuzz_gguf.cpp native/engine/io/gguf.cpp \
//     native/engine/io/tensor_store.cpp native/engine/core/error.cpp -lggml-base
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/error.h"
#include "ggml.h"
#include "io/gguf.h"

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

// Bytes the tensor's type and shape call for; aborts (a finding) if the reader let through a
// type ggml does not know.
uint64_t expected_bytes(const sdn::TensorInfo& t) {
  if (t.dtype != sdn::DType::Ggml) return static_cast<uint64_t>(t.numel()) * sdn::dtype_size(t.dtype);
  if (t.ggml_type < 0 || t.ggml_type >= GGML_TYPE_COUNT || t.shape.empty()) std::abort();
  const ggml_type type = static_cast<ggml_type>(t.ggml_type);
  if (ggml_blck_size(type) <= 0 || t.shape.back() % ggml_blck_size(type) != 0) std::abort();
  return ggml_row_size(type, t.shape.back()) * static_cast<uint64_t>(t.numel() / t.shape.back());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src = std::make_shared<InputBytes>(data, size);
  const uint8_t* begin = src->data();
  const uint8_t* end = begin + src->size();
  try {
    sdn::TensorStore store = sdn::parse_gguf(src, "fuzz");
    unsigned sum = 0;
    std::vector<float> f32;
    std::vector<uint16_t> f16;
    for (const sdn::TensorInfo& t : store.tensors()) {
      if (t.nbytes == 0 || t.data < begin || t.data > end || static_cast<size_t>(end - t.data) < t.nbytes) std::abort();
      if (expected_bytes(t) != t.nbytes) std::abort();
      for (size_t k = 0; k < t.nbytes; ++k) sum += t.data[k];
      switch (t.dtype) {
        case sdn::DType::F64:
        case sdn::DType::F32:
        case sdn::DType::F16:
        case sdn::DType::BF16:
        case sdn::DType::Ggml:
          f32.resize(static_cast<size_t>(t.numel()));
          f16.resize(static_cast<size_t>(t.numel()));
          try {
            sdn::TensorStore::to_f32(t, f32.data());
            sdn::TensorStore::to_f16(t, f16.data());
          } catch (const sdn::Error& e) {
            // Block formats ggml has no decoder for (q8_1, q8_K) are refused as ModelFormat.
            if (t.dtype != sdn::DType::Ggml || e.code() != sdn::ErrorCode::ModelFormat) std::abort();
          }
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
