// Small graph builders shared by the networks. Each layer is loaded from checkpoint keys
// (shapes from the file) and applied to activations laid out [W, H, C, N] (ggml ne order).
#pragma once

#include <string>

#include "ggml.h"
#include "nn/weight_lookup.h"

namespace sdn {

struct Conv2d {
  ggml_tensor* weight = nullptr;  // [KW, KH, IC, OC]  <- "<prefix>.weight" [OC, IC, KH, KW]
                                  // or, unfolded (a quantized kernel), [KW·KH·IC, OC]
  ggml_tensor* bias = nullptr;    // [OC]              <- "<prefix>.bias" (optional)
  int stride = 1;
  // The input is multiplied by this before it is unfolded and the product divided by it again
  // (before the bias): with f16 kernels the unfolded activations are f16, and SDXL's VAE makes
  // activations past f16's 65504 (stable-diffusion.cpp's remedy scales them by 1/32). 1: none.
  float input_scale = 1.0f;
  // Unfold the input in f32 whatever the kernel's float type (which is then cast to f32 in the
  // graph, and input_scale is not needed). f16 columns halve the unfolding's memory and are
  // what GPUs multiply fastest; on the CPU, f32 columns took 26% less CPU time for the SD VAE's
  // 256² decode (its large convolutions: ggml's f32 GEMM beats its f16 one), but 20% more for
  // the UNet's smaller ones, whose kernel casts then weigh more. Networks' owners set it.
  bool f32_columns = false;
  bool unfolded = false;  // weight is the [KW·KH·IC, OC] matrix (nn/weight_types.h)

  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int64_t kernel() const { return kernel_; }

  static Conv2d load(WeightLookup& w, const std::string& prefix, int stride = 1);

 private:
  int64_t kernel_ = 0, in_ = 0, out_ = 0;  // from the file's [OC, IC, KH, KW]
};

// Same-size padding for odd square kernels, as PyTorch's padding=k//2. The unfolded input
// (im2col) takes the kernel's precision: f32 for f32 kernels (ggml_conv_2d would round the
// activations to f16 whatever the weights), f16 otherwise.
ggml_tensor* conv2d(ggml_context* ctx, const Conv2d& conv, ggml_tensor* x);
// The same with an explicit symmetric padding (e.g. 0 after an asymmetric ggml_pad).
ggml_tensor* conv2d(ggml_context* ctx, const Conv2d& conv, ggml_tensor* x, int pad);

struct GroupNorm {
  ggml_tensor* weight = nullptr;  // [C]
  ggml_tensor* bias = nullptr;    // [C]
  int groups = 32;
  float eps = 1e-5f;

  int64_t channels() const { return weight->ne[0]; }

  // `groups` is not in the weights: the architecture fixes it.
  static GroupNorm load(WeightLookup& w, const std::string& prefix, int groups, float eps);
};

ggml_tensor* group_norm(ggml_context* ctx, const GroupNorm& norm, ggml_tensor* x);

struct Linear {
  ggml_tensor* weight = nullptr;  // [IN, OUT]  <- "<prefix>.weight" [OUT, IN] (any type mul_mat takes)
  ggml_tensor* bias = nullptr;    // [OUT]      <- "<prefix>.bias" (optional), f32
  const std::vector<LowRankAdapter>* adapters = nullptr;  // LoRAs applied at run time (quantized weights)

  int64_t in_features() const { return weight->ne[0]; }
  int64_t out_features() const { return weight->ne[1]; }

  static Linear load(WeightLookup& w, const std::string& prefix);
};

// x [IN, ...] -> [OUT, ...]
ggml_tensor* linear(ggml_context* ctx, const Linear& l, ggml_tensor* x);
// W·x (W [IN, OUT], any layout mul_mat takes) plus the run-time LoRA updates; no bias.
ggml_tensor* matrix_product(ggml_context* ctx, ggml_tensor* w, const std::vector<LowRankAdapter>* adapters, ggml_tensor* x);

struct LayerNorm {
  ggml_tensor* weight = nullptr;  // [C] f32
  ggml_tensor* bias = nullptr;    // [C] f32
  float eps = 1e-5f;

  static LayerNorm load(WeightLookup& w, const std::string& prefix, float eps);
};

// Normalizes over ne[0].
ggml_tensor* layer_norm(ggml_context* ctx, const LayerNorm& norm, ggml_tensor* x);

// Nearest-neighbour ×2, as nn.Upsample(scale_factor=2).
ggml_tensor* upsample_nearest2x(ggml_context* ctx, ggml_tensor* x);

}  // namespace sdn
