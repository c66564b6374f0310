// The SD AutoencoderKL (ldm/models/autoencoder.py with the Encoder and Decoder of
// ldm/modules/diffusionmodules/model.py) as ggml graphs. Levels, res blocks per level, channel
// counts, latent and image channels all come from the weights' names and shapes, so a tiny
// generated VAE and SD's 4-level 128/256/512/512 one run the same code. Weights are looked up
// under the internal (LDM) names, "first_stage_model." + the keys given below.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ggml.h"
#include "nn/layers.h"
#include "nn/vae_blocks.h"
#include "nn/weight_lookup.h"

namespace sdn {

constexpr const char* kVaePrefix = "first_stage_model.";

// Image -> the posterior's moments: conv_in, levels of res blocks with a stride-2 downsample
// after every level but the last, mid, norm_out, SiLU, conv_out, then quant_conv.
class VaeEncoder {
 public:
  struct Level {
    std::vector<VaeResBlock> blocks;  // "encoder.down.<L>.block.<B>.*"
    bool has_downsample = false;      // every level but the last
    VaeDownsample downsample;         // "encoder.down.<L>.downsample.conv.*"
  };

  // Throws ModelCompatibility naming the missing or mis-shaped weight (the model has no VAE
  // encoder when "encoder.conv_in.weight" is missing).
  static VaeEncoder load(WeightLookup& w, const std::string& prefix = kVaePrefix);

  int64_t image_channels() const { return conv_in_.in_channels(); }
  // 2 × latent channels: [mean..., logvar...].
  int64_t moment_channels() const { return quant_conv_.weight ? quant_conv_.out_channels() : conv_out_.out_channels(); }
  // Image pixels per latent cell along each side: 2^(downsamplings).
  int downscale() const { return downscale_; }
  // The most elements one intermediate (an im2col buffer, the attention scores) holds for an
  // image of this size: a size guard before any allocation.
  double peak_elements(double width, double height) const;

  // x [W, H, C_img, N] in [-1, 1], sides multiples of downscale() -> [W/f, H/f, 2·z, N]
  ggml_tensor* build(ggml_context* ctx, ggml_tensor* x) const;
  // Sets something on every convolution (Conv2d::input_scale, f32_columns).
  void for_each_conv(const std::function<void(Conv2d&)>& set);

 private:
  Conv2d conv_in_;  // "encoder.conv_in.*"   [ch, C_img, 3, 3]
  std::vector<Level> levels_;
  VaeMid mid_;          // "encoder.mid.{block_1,attn_1,block_2}.*"
  GroupNorm norm_out_;  // "encoder.norm_out.*" [C_top]
  Conv2d conv_out_;     // "encoder.conv_out.*" [2·z, C_top, 3, 3]
  Conv2d quant_conv_;   // "quant_conv.*"       [2·embed, 2·z, 1, 1] (optional)
  int downscale_ = 1;
};

// Latent -> image about [-1, 1]: post_quant_conv, conv_in, mid, levels from the highest index
// down to 0 (num_res_blocks + 1 blocks each, nearest ×2 upsample after every level but 0),
// norm_out, SiLU, conv_out.
class VaeDecoder {
 public:
  struct Level {
    std::vector<VaeResBlock> blocks;  // "decoder.up.<L>.block.<B>.*"
    bool has_upsample = false;        // every level but 0
    VaeUpsample upsample;             // "decoder.up.<L>.upsample.conv.*"
  };

  // Throws ModelCompatibility naming the missing or mis-shaped weight (the model has no VAE
  // decoder when "decoder.conv_in.weight" is missing).
  static VaeDecoder load(WeightLookup& w, const std::string& prefix = kVaePrefix);

  // Channels of the latent the decoder takes (post_quant_conv's input).
  int64_t latent_channels() const { return post_quant_conv_.weight ? post_quant_conv_.in_channels() : conv_in_.in_channels(); }
  int64_t image_channels() const { return conv_out_.out_channels(); }
  // Image pixels per latent cell along each side: 2^(upsamplings).
  int upscale() const { return upscale_; }
  // As VaeEncoder::peak_elements, for a latent of this size.
  double peak_elements(double width, double height) const;

  // z [w, h, C_latent, N] (already divided by the scale factor) -> [w·f, h·f, C_img, N]
  ggml_tensor* build(ggml_context* ctx, ggml_tensor* z) const;
  // Sets something on every convolution (Conv2d::input_scale, f32_columns).
  void for_each_conv(const std::function<void(Conv2d&)>& set);

 private:
  Conv2d post_quant_conv_;  // "post_quant_conv.*"  [z, embed, 1, 1] (optional)
  Conv2d conv_in_;          // "decoder.conv_in.*"  [C_top, z, 3, 3]
  VaeMid mid_;              // "decoder.mid.{block_1,attn_1,block_2}.*"
  std::vector<Level> levels_;  // index = LDM level; built from levels_.back() down to levels_[0]
  GroupNorm norm_out_;      // "decoder.norm_out.*" [C_0]
  Conv2d conv_out_;         // "decoder.conv_out.*" [C_img, C_0, 3, 3]
  int upscale_ = 1;
};

}  // namespace sdn
