// ControlNet (lllyasviel's cldm.ControlNet, the ControlNet-v1-1 layout) as a ggml graph builder:
// a copy of the UNet's first half (time / label embedding, input_blocks.N, middle_block; the
// UNet's own loader, nn/unet.h's UnetEncoder) whose stem output gets the encoded hint image
// added, and a 1×1 "zero conv" after every input block and after the middle block. Their
// outputs are residuals the UNet adds to its decoder's skips and to its middle block's output
// (UnetInputs). Everything comes from the weights under the internal names
//   control_model.{time_embed, label_emb, input_blocks, middle_block}.*   as the UNet's
//   control_model.input_hint_block.{0,2,...}      3×3 convs with SiLU between (nn.Sequential)
//   control_model.zero_convs.N.0                  [C, C, 1, 1], one per input block
//   control_model.middle_block_out.0              [C, C, 1, 1]
// (io/name_map_controlnet.h maps files onto them).
#pragma once

#include <string>
#include <vector>

#include "ggml.h"
#include "io/name_map_controlnet.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/unet.h"
#include "nn/weight_lookup.h"

namespace sdn {

// cldm's input_hint_block: the hint image (3 channels in [0, 1], at pixel resolution) to the
// latent's resolution and the UNet's model channels.
struct HintEncoder {
  std::vector<Conv2d> convs;  // input_hint_block.{0,2,4,...}, SiLU after all but the last

  int64_t in_channels() const { return convs.front().in_channels(); }
  int64_t out_channels() const { return convs.back().out_channels(); }
  // Pixels per output cell along each side: the product of the convs' strides.
  int downscale() const;
};

struct ControlNetInputs {
  ggml_tensor* x = nullptr;            // [W, H, C, B] the UNet's latent input (× c_in), 4 channels
  ggml_tensor* t_freq = nullptr;       // [model_channels, B]
  ggml_tensor* context = nullptr;      // [context_dim, tokens, B]
  ggml_tensor* y = nullptr;            // [adm_channels, B], or null without label_emb
  ggml_tensor* guided_hint = nullptr;  // [W, H, model_channels, 1] build_hint()'s output, the same for every batch entry
};

class ControlNetwork {
 public:
  // Throws ModelCompatibility naming what is missing or does not chain.
  static ControlNetwork load(WeightLookup& w, const std::string& prefix = kInternalControlNet);

  const UnetEncoder& encoder() const { return encoder_; }
  const HintEncoder& hint() const { return hint_; }
  int64_t context_dim() const { return context_dim_; }
  // Input blocks: the residuals build() makes are this many, plus one for the middle block.
  size_t blocks() const { return encoder_.input_blocks().size(); }
  size_t graph_nodes_estimate() const;

  // Throws ModelCompatibility naming the first thing that does not fit `unet` (latent
  // channels, model channels, levels, each input block's channels, the middle block's,
  // context width, the vector y for SDXL-like UNets).
  void check_fits(const UnetNetwork& unet) const;
  // As UnetNetwork::check_heads.
  void check_heads(int heads, int head_dim) const;

  // hint [W·d, H·d, 3, 1] (d = hint().downscale()) -> [W, H, model_channels, 1]
  ggml_tensor* build_hint(ggml_context* ctx, ggml_tensor* hint) const;
  // The residuals, unscaled: blocks() of them, each the shape of its input block's output,
  // then the middle block's.
  std::vector<ggml_tensor*> build(ggml_context* ctx, const ControlNetInputs& in, int heads, int head_dim,
                                  const AttentionOptions& attention) const;

 private:
  UnetEncoder encoder_;
  HintEncoder hint_;
  std::vector<Conv2d> zero_convs_;  // zero_convs.N.0
  Conv2d middle_out_;               // middle_block_out.0
  int64_t context_dim_ = 0, max_channels_ = 0;
};

}  // namespace sdn
