// Tiny AutoEncoder (TAESD family, madebyollin/taesd): plain 3x3 convs, ReLU, residual
// blocks, stride-2 convs down, nearest x2 up. The layer list is read from the checkpoint's
// nn.Sequential indices; channel counts, latent channels, depth and the optional GroupNorm
// "pool" branch come from the weights.
#pragma once

#include <vector>

#include "nn/layers.h"
#include "nn/weights.h"

namespace sdn {

struct TaeBlock {
  Conv2d conv[3];        // "<i>.conv.{0,2,4}", ReLU between
  Conv2d skip;           // "<i>.skip" 1x1, only when channels change
  bool has_pool = false;  // "<i>.pool.{0,1,3}": x += 1x1 -> GroupNorm(4) -> ReLU -> 1x1
  Conv2d pool_expand;
  GroupNorm pool_norm;
  Conv2d pool_project;

  static TaeBlock load(Weights& w, const std::string& prefix, int64_t in_channels);
  int64_t out_channels() const { return conv[2].out_channels(); }
};

ggml_tensor* tae_block(ggml_context* ctx, const TaeBlock& b, ggml_tensor* x);

struct TaeLayer {
  enum Kind { Conv, Downsample, Upsample, Block } kind = Conv;  // Upsample: nearest x2 then conv
  Conv2d conv;
  TaeBlock block;
};

class TaeNetwork {
 public:
  enum Role { Encoder, Decoder };

  // Reads the layer list from `store` and declares the weights. Throws ModelCompatibility
  // when the file is not a TAE encoder/decoder or its shapes do not chain.
  static TaeNetwork load(Weights& w, const TensorStore& store, Role role);

  Role role() const { return role_; }
  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  // Pixels per latent cell along each side (8 for TAESD).
  int scale() const { return scale_; }

  // Encoder: [W, H, 3, N] RGB in [0,1] -> [W/s, H/s, C, N] latent.
  // Decoder: [W, H, C, N] latent -> [W*s, H*s, 3, N] RGB, about [0,1] (not clamped).
  ggml_tensor* build(ggml_context* ctx, ggml_tensor* x) const;

 private:
  Role role_ = Encoder;
  std::vector<TaeLayer> layers_;
  int64_t in_channels_ = 0;
  int64_t out_channels_ = 0;
  int scale_ = 1;
};

}  // namespace sdn
