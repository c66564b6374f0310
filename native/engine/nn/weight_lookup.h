// Where graph builders take their weights from, by checkpoint (internal) name: the TAE's
// declare-then-upload Weights, or a loaded model's ModelWeights.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ggml.h"

namespace sdn {

// A low-rank update applied at run time beside a weight the engine does not rewrite (a
// quantized one): x·W + scale · up·(down·x).
struct LowRankAdapter {
  ggml_tensor* down = nullptr;  // [IN, R]   <- a LoRA's lora_down [R, IN], f32
  ggml_tensor* up = nullptr;    // [R, OUT]  <- lora_up [OUT, R], f32
  float scale = 1.0f;           // alpha / rank × the user's weight
};

class WeightLookup {
 public:
  virtual ~WeightLookup() = default;
  virtual bool has(const std::string& name) const = 0;
  // The weight `name`, whose file shape has `rank` dimensions. Throws ModelCompatibility when
  // it is missing or has another rank.
  virtual ggml_tensor* require(const std::string& name, int rank) = 0;
  // The same, in f32 whatever the file stores: biases and norm scales, which ops add and
  // multiply element-wise in f32.
  virtual ggml_tensor* require_f32(const std::string& name, int rank) = 0;
  // Run-time updates of the matrix `name` (its consumer, a linear layer, adds them), or null.
  virtual const std::vector<LowRankAdapter>* adapters(const std::string& /*name*/) { return nullptr; }
  // The file shape [OC, IC, KH, KW] of a conv kernel that require(name, 4) gives as the
  // [IC·KH·KW, OC] matrix it multiplies as (a quantized kernel: ggml blocks cannot hold rows of
  // KW); empty for every other weight.
  virtual std::vector<int64_t> unfolded_kernel_shape(const std::string& /*name*/) const { return {}; }
};

// Throws ModelCompatibility "<what>: expected <expected>, the file has <actual>".
void expect_dim(const std::string& what, int64_t actual, int64_t expected);

}  // namespace sdn
