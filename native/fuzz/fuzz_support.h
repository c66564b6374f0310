// What every model-file fuzz target shares: the input as a ByteSource, the checks a loaded
// store must pass, and which failures are allowed. Anything else aborts: a finding.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/error.h"
#include "io/tensor_store.h"

namespace fuzz {

// An exact-size heap copy, so that AddressSanitizer sees any read past the input's end.
class InputBytes : public sdn::ByteSource {
 public:
  InputBytes(const uint8_t* data, size_t size) : bytes_(data, data + size) {}
  const uint8_t* data() const override { return bytes_.data(); }
  size_t size() const override { return bytes_.size(); }

 private:
  std::vector<uint8_t> bytes_;
};


// Parses `data` with `parse(source)`; a loaded store must keep each tensor's bytes inside the
// input, sized as `expected_bytes(t)` says, and decode every float tensor to f32 and f16
// (block formats ggml cannot decode may refuse with ModelFormat). Failures other than
// ModelFormat and Resource abort.
template <typename Parse, typename ExpectedBytes>
int run_one(const uint8_t* data, size_t size, Parse parse, ExpectedBytes expected_bytes) {
  auto src = std::make_shared<InputBytes>(data, size);
  const uint8_t* begin = src->data();
  const uint8_t* end = begin + src->size();
  try {
    sdn::TensorStore store = parse(src);
    unsigned sum = 0;
    std::vector<float> f32;
    std::vector<uint16_t> f16;
    for (const sdn::TensorInfo& t : store.tensors()) {
      if (t.nbytes && (t.data < begin || t.data > end || static_cast<size_t>(end - t.data) < t.nbytes)) std::abort();
      if (expected_bytes(t) != t.nbytes) std::abort();
      for (size_t k = 0; k < t.nbytes; ++k) sum += t.data[k];
      if (!sdn::is_float_dtype(t.dtype) && t.dtype != sdn::DType::Ggml) continue;
      f32.resize(static_cast<size_t>(t.numel()));
      f16.resize(static_cast<size_t>(t.numel()));
      try {
        sdn::TensorStore::to_f32(t, f32.data());
        sdn::TensorStore::to_f16(t, f16.data());
      } catch (const sdn::Error& e) {
        if (t.dtype != sdn::DType::Ggml || e.code() != sdn::ErrorCode::ModelFormat) std::abort();
      }
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const sdn::Error& e) {
    if (e.code() != sdn::ErrorCode::ModelFormat && e.code() != sdn::ErrorCode::Resource) std::abort();
  }
  return 0;
}

}  // namespace fuzz
