// Network weights on a device. A network declares the tensors it needs by checkpoint name;
// their shapes come from the file, the network checks they fit together, then everything is
// uploaded in one backend buffer.
#pragma once

#include <string>
#include <vector>

#include "ggml.h"
#include "io/tensor_store.h"
#include "nn/weight_lookup.h"

struct ggml_backend_buffer;
struct ggml_backend_buffer_type;

namespace sdn {

class Weights : public WeightLookup {
 public:
  // `float_type`: GGML_TYPE_F32 or GGML_TYPE_F16, what floating-point weights are stored as.
  Weights(const TensorStore& store, ggml_type float_type, size_t max_tensors);
  ~Weights() override;
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;

  bool has(const std::string& name) const override { return store_.find(name) != nullptr; }
  // The tensor `name` with the file's shape in ggml order (innermost first). Throws
  // ModelCompatibility when it is missing or its rank is not `rank`.
  ggml_tensor* require(const std::string& name, int rank) override;
  ggml_tensor* require_f32(const std::string& name, int rank) override { return require(name, rank, GGML_TYPE_F32); }
  // `ggml_type` forced (e.g. F32 for norms whatever `float_type` is).
  ggml_tensor* require(const std::string& name, int rank, ggml_type type);

  // Allocates every declared tensor in `buft` and copies the data in.
  void upload(ggml_backend_buffer_type* buft);
  size_t bytes() const;

 private:
  const TensorStore& store_;
  ggml_type float_type_;
  size_t max_tensors_;
  ggml_context* ctx_ = nullptr;
  ggml_backend_buffer* buffer_ = nullptr;
  std::vector<std::pair<ggml_tensor*, const TensorInfo*>> declared_;
};


}  // namespace sdn
