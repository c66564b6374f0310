// The blocks of the SD AutoencoderKL (ldm/modules/diffusionmodules/model.py): ResnetBlock
// without a time embedding, the single-head AttnBlock of the middle, the stride-2 Downsample
// with LDM's asymmetric padding, and the nearest-×2 Upsample. GroupNorm everywhere is 32 groups,
// eps 1e-6; the nonlinearity is SiLU. Activations are [W, H, C, N] (ggml ne order).
#pragma once

#include <string>

#include "ggml.h"
#include "nn/layers.h"
#include "nn/weight_lookup.h"

namespace sdn {

constexpr int kVaeGroups = 32;
constexpr float kVaeEps = 1e-6f;

// ResnetBlock: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), the skip through a 1×1
// nin_shortcut when the channel count changes.
struct VaeResBlock {
  GroupNorm norm1;     // "<p>.norm1.{weight,bias}"       [C_in]
  Conv2d conv1;        // "<p>.conv1.{weight,bias}"       [C_out, C_in, 3, 3]
  GroupNorm norm2;     // "<p>.norm2.{weight,bias}"       [C_out]
  Conv2d conv2;        // "<p>.conv2.{weight,bias}"       [C_out, C_out, 3, 3]
  Conv2d nin_shortcut;  // "<p>.nin_shortcut.{weight,bias}" [C_out, C_in, 1, 1], only when C_in != C_out

  int64_t in_channels() const { return norm1.channels(); }
  int64_t out_channels() const { return conv2.out_channels(); }

  // Throws ModelCompatibility when a weight is missing or the shapes do not chain from
  // `in_channels`.
  static VaeResBlock load(WeightLookup& w, const std::string& prefix, int64_t in_channels);
};

// x [W, H, C_in, N] -> [W, H, C_out, N]
ggml_tensor* vae_resblock(ggml_context* ctx, const VaeResBlock& b, ggml_tensor* x, const std::string& name);

// AttnBlock: single-head self-attention over the H·W positions, q/k/v/proj_out 1×1 convs,
// applied here as matrix products on [C, H·W].
struct VaeAttention {
  GroupNorm norm;  // "<p>.norm.{weight,bias}" [C]
  // "<p>.{q,k,v,proj_out}.weight" [C, C, 1, 1] -> ggml [1, 1, C_in, C_out]; bias [C] f32
  ggml_tensor* q_w = nullptr;
  ggml_tensor* q_b = nullptr;
  ggml_tensor* k_w = nullptr;
  ggml_tensor* k_b = nullptr;
  ggml_tensor* v_w = nullptr;
  ggml_tensor* v_b = nullptr;
  ggml_tensor* proj_w = nullptr;
  ggml_tensor* proj_b = nullptr;

  int64_t channels() const { return norm.channels(); }

  static VaeAttention load(WeightLookup& w, const std::string& prefix, int64_t channels);
};

// x [W, H, C, N] -> x + proj_out(attention(norm(x))), [W, H, C, N]
ggml_tensor* vae_attention(ggml_context* ctx, const VaeAttention& a, ggml_tensor* x, const std::string& name);

// Downsample (with_conv): zero-pad one column right and one row below, then a 3×3 conv with
// stride 2 and no padding: [W, H, C, N] -> [W/2, H/2, C, N] for even sides.
struct VaeDownsample {
  Conv2d conv;  // "<p>.conv.{weight,bias}" [C, C, 3, 3]

  static VaeDownsample load(WeightLookup& w, const std::string& prefix, int64_t channels);
};

ggml_tensor* vae_downsample(ggml_context* ctx, const VaeDownsample& d, ggml_tensor* x, const std::string& name);

// Upsample (with_conv): nearest ×2, then a same-size conv: [W, H, C, N] -> [2W, 2H, C, N].
struct VaeUpsample {
  Conv2d conv;  // "<p>.conv.{weight,bias}" [C, C, 3, 3]

  static VaeUpsample load(WeightLookup& w, const std::string& prefix, int64_t channels);
};

ggml_tensor* vae_upsample(ggml_context* ctx, const VaeUpsample& u, ggml_tensor* x, const std::string& name);

// The middle of both networks: block_1, attn_1, block_2 at a fixed channel count.
struct VaeMid {
  VaeResBlock block_1;  // "<p>.block_1.*"
  VaeAttention attn_1;  // "<p>.attn_1.*"
  VaeResBlock block_2;  // "<p>.block_2.*"

  static VaeMid load(WeightLookup& w, const std::string& prefix, int64_t channels);
};

// x [W, H, C, N] -> [W, H, C, N]
ggml_tensor* vae_mid(ggml_context* ctx, const VaeMid& m, ggml_tensor* x, const std::string& name);

}  // namespace sdn
