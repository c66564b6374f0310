// The Stable Diffusion UNet (LDM openaimodel.UNetModel with spatial transformers) as a ggml
// graph builder. Its layout is read from the checkpoint names under
// `model.diffusion_model.`: input_blocks.N / middle_block / output_blocks.N are sequences of
// layers (a ResBlock, a SpatialTransformer, a stride-2 conv `op`, a nearest×2 + `conv`), each
// recognized by its keys. Levels, res blocks per level, where the transformers are, their depth,
// channel counts, in-channels (4, or 9 for inpainting) and the context width all come from the
// names and shapes; only the attention head split is not in the weights (UnetParams).
//
// Activations are [W, H, C, B] and token sequences [C, T, B] (ggml ne order).
#pragma once

#include <string>
#include <vector>

#include "ggml.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/weight_lookup.h"

namespace sdn {

// openaimodel.ResBlock, "<prefix>.*"
struct ResBlock {
  GroupNorm in_norm;   // in_layers.0       [C_in]        (32 groups, eps 1e-5)
  Conv2d in_conv;      // in_layers.2       [C_out, C_in, 3, 3]
  Linear emb;          // emb_layers.1      [C_out, T]    (after SiLU of the time embedding)
  GroupNorm out_norm;  // out_layers.0      [C_out]
  Conv2d out_conv;     // out_layers.3      [C_out, C_out, 3, 3]
  Conv2d skip;         // skip_connection   [C_out, C_in, 1, 1], only when C_in != C_out

  int64_t in_channels() const { return in_norm.channels(); }
  int64_t out_channels() const { return out_conv.out_channels(); }
  static ResBlock load(WeightLookup& w, const std::string& prefix, int64_t time_dim);
};

// attention.BasicTransformerBlock, "<prefix>.transformer_blocks.K.*"
struct TransformerBlock {
  LayerNorm norm1, norm2, norm3;        // norm{1,2,3}      [D]  (eps 1e-5)
  Linear q1, k1, v1, out1;              // attn1.to_{q,k,v} [D, D], attn1.to_out.0 [D, D] + bias
  Linear q2, k2, v2, out2;              // attn2.to_q [D, D], to_{k,v} [D, context width], to_out.0
  Linear ff_in;                         // ff.net.0.proj    [2·F, D] (GEGLU: value half, gate half)
  Linear ff_out;                        // ff.net.2         [D, F]

  static TransformerBlock load(WeightLookup& w, const std::string& prefix, int64_t dim);
};

// attention.SpatialTransformer, "<prefix>.*"
struct SpatialTransformer {
  GroupNorm norm;                         // norm      [C] (32 groups, eps 1e-6)
  Linear proj_in;                         // proj_in   [D, C, 1, 1] conv (SD1.x) or [D, C] (SD2.x)
  std::vector<TransformerBlock> blocks;   // transformer_blocks.0..depth-1
  Linear proj_out;                        // proj_out  [C, D, 1, 1] or [C, D]
  int64_t inner = 0;                      // D (= C in every SD model)

  int64_t channels() const { return norm.channels(); }
  int64_t inner_dim() const { return inner; }
  int64_t context_dim() const { return blocks.front().k2.in_features(); }
  static SpatialTransformer load(WeightLookup& w, const std::string& prefix);
};

// One entry of a TimestepEmbedSequential.
struct UnetLayer {
  enum Kind { Conv, Res, Transformer, Downsample, Upsample } kind = Conv;
  Conv2d conv;  // Conv: "<i>" 3×3; Downsample: "<i>.op" stride 2; Upsample: "<i>.conv" after nearest ×2
  ResBlock res;
  SpatialTransformer transformer;
};

struct UnetBlock {
  std::string name;  // "input_blocks.3", for ggml_format_name
  std::vector<UnetLayer> layers;
};

// Channels and downsampling level of the activation as the layers are chained.
struct UnetTrace {
  int64_t channels = 0;
  int level = 0;
  int max_level = 0;
};

// The UNet's first half: the time (and label) embedding, input_blocks.N and middle_block under
// `prefix` — what the UNet runs before its decoder, and what a ControlNet copies (nn/controlnet.h).
class UnetEncoder {
 public:
  struct Skip {
    int64_t channels;  // of the input block's output
    int level;         // its downsampling level
  };
  // Throws ModelCompatibility when names are missing or shapes do not chain.
  static UnetEncoder load(WeightLookup& w, const std::string& prefix);

  int64_t in_channels() const { return in_channels_; }
  int64_t model_channels() const { return time_embed_in_.in_features(); }
  int64_t time_dim() const { return time_embed_in_.out_features(); }
  int64_t adm_channels() const { return label_emb_in_.weight ? label_emb_in_.in_features() : 0; }
  // The activation after the middle block (its channels, level, and the deepest level reached).
  const UnetTrace& trace() const { return trace_; }
  // One per input block: what its output is, as the decoder's skip takes it.
  const std::vector<Skip>& skips() const { return skips_; }
  const std::vector<UnetBlock>& input_blocks() const { return input_blocks_; }
  const UnetBlock& middle() const { return middle_; }

  // SiLU of the time embedding (plus label_emb(y) for UNets with one): what every ResBlock's
  // emb_layers take. t_freq [model_channels, B], y [adm_channels, B] or null -> [T, B].
  ggml_tensor* embed(ggml_context* ctx, ggml_tensor* t_freq, ggml_tensor* y, const char* net) const;

 private:
  int64_t in_channels_ = 0;
  Linear time_embed_in_;   // time_embed.0 [T, model_channels]
  Linear time_embed_out_;  // time_embed.2 [T, T]
  Linear label_emb_in_;    // label_emb.0.0 [T, adm_channels] (absent without label_emb)
  Linear label_emb_out_;   // label_emb.0.2 [T, T]
  std::vector<UnetBlock> input_blocks_;  // input_blocks.0 is the stem conv
  UnetBlock middle_;
  std::vector<Skip> skips_;
  UnetTrace trace_;
};

// Loads the TimestepEmbedSequential "<root><name>" (its layers recognized by their keys),
// chaining `t`. Throws ModelCompatibility.
UnetBlock load_unet_block(WeightLookup& w, const std::string& root, const std::string& name, int64_t time_dim, UnetTrace& t);
// Whether "<p>.0" is a layer of some kind.
bool unet_block_exists(WeightLookup& w, const std::string& p);
// Runs one block's layers on h [W, H, C, B]; names the result "<net>.<block name>".
ggml_tensor* apply_unet_block(ggml_context* ctx, const UnetBlock& block, ggml_tensor* h, ggml_tensor* emb_silu,
                              ggml_tensor* context, int heads, int head_dim, const AttentionOptions& attention,
                              const char* net);
// Throws ModelCompatibility unless every spatial transformer of the block splits by heads / head_dim.
void check_unet_block_heads(const UnetBlock& block, int heads, int head_dim);
// Widens max_channels to the block's widest layer and sets (or checks) the context width of
// its cross-attentions.
void visit_unet_block_widths(const UnetBlock& block, int64_t& context_dim, int64_t& max_channels);
// Graph nodes the block takes, about.
size_t unet_block_nodes(const UnetBlock& block);

// The forward's inputs, created by the caller in the graph's context (all f32, set after
// allocation).
struct UnetInputs {
  ggml_tensor* x = nullptr;         // [W, H, in_channels, B]  latent (+ mask + masked latent)
  ggml_tensor* t_freq = nullptr;    // [model_channels, B]     sinusoidal_embedding() of the timesteps
  ggml_tensor* context = nullptr;   // [context_dim, tokens, B]
  ggml_tensor* y = nullptr;         // [adm_channels, B] the class / pooled-text vector (SDXL); null without label_emb
  // Residuals a ControlNet adds: one per input block, to that block's output as the decoder's
  // skip connection takes it (not to the encoder's own path), and one to the middle block's
  // output. Empty: none. Else skip_residuals has one entry per input block, each null or the
  // block output's shape.
  std::vector<ggml_tensor*> skip_residuals;
  ggml_tensor* middle_residual = nullptr;
};

class UnetNetwork {
 public:
  // `prefix`: where the UNet's names start ("model.diffusion_model."). Throws
  // ModelCompatibility when names are missing or shapes do not chain.
  static UnetNetwork load(WeightLookup& w, const std::string& prefix = "model.diffusion_model.");
  // The latent (+ mask + masked-image) channels the stem takes — 4, or 9 for inpainting UNets —
  // from its conv weight alone, for what must be known before the whole network is loaded.
  static int64_t input_channels(WeightLookup& w, const std::string& prefix = "model.diffusion_model.");

  int64_t in_channels() const { return encoder_.in_channels(); }
  int64_t out_channels() const { return out_conv_.out_channels(); }
  int64_t model_channels() const { return encoder_.model_channels(); }
  int64_t context_dim() const { return context_dim_; }
  // Width of the vector `y` the UNet adds to its time embedding through label_emb (SDXL: pooled
  // text 1280 + six 256-wide size embeddings = 2816); 0 for UNets without one (SD1.x, SD2.x).
  int64_t adm_channels() const { return encoder_.adm_channels(); }
  // The first half (input blocks, middle block), for a ControlNet to check itself against.
  const UnetEncoder& encoder() const { return encoder_; }
  // Latent sides must be multiples of this (2^downsamplings).
  int64_t side_multiple() const { return int64_t(1) << downsamplings_; }
  // Widest spatial transformer (for sizing checks).
  int64_t max_channels() const { return max_channels_; }
  size_t graph_nodes_estimate() const;

  // Throws InvalidArgument unless exactly one of heads / head_dim is positive and every spatial
  // transformer's inner width splits by it.
  void check_heads(int heads, int head_dim) const;
  // Throws InvalidArgument for shapes this network cannot take (channels, sides the
  // downsamplings do not divide, context width, non-positive sizes).
  void check_shape(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t context_tokens) const;

  // -> [W, H, out_channels, B]. Call check_heads / check_shape first: ggml asserts on what they refuse.
  ggml_tensor* build(ggml_context* ctx, const UnetInputs& in, int heads, int head_dim,
                     const AttentionOptions& attention) const;

 private:
  int64_t context_dim_ = 0, max_channels_ = 0;
  int downsamplings_ = 0;
  UnetEncoder encoder_;                   // time embedding, input blocks, middle block
  std::vector<UnetBlock> output_blocks_;  // each starts with a ResBlock on concat(h, skip)
  GroupNorm out_norm_;  // out.0 [C]
  Conv2d out_conv_;     // out.2 [out_channels, C, 3, 3]
};

// LDM's timestep_embedding: [cos(t·f_0..f_{h-1}), sin(t·f_0..f_{h-1})], f_j = 10000^(-j/h),
// h = dim/2 (a zero appended for odd dim); computed in double on the host so that every device
// gets the same values. -> [batch][dim].
std::vector<float> sinusoidal_embedding(const std::vector<float>& timesteps, int64_t dim);

// Graph builders (exposed for reuse by other networks of the family).
// x [W, H, C_in, B], emb_silu [T, B] (SiLU of the time embedding) -> [W, H, C_out, B]
ggml_tensor* resblock(ggml_context* ctx, const ResBlock& b, ggml_tensor* x, ggml_tensor* emb_silu);
// x [W, H, C, B], context [Dc, T, B] -> [W, H, C, B]
ggml_tensor* spatial_transformer(ggml_context* ctx, const SpatialTransformer& st, ggml_tensor* x,
                                 ggml_tensor* context, int heads, const AttentionOptions& attention);
// [W, H, C, B] -> [W/2, H/2, C, B]
ggml_tensor* downsample(ggml_context* ctx, const Conv2d& op, ggml_tensor* x);
// [W, H, C, B] -> [2W, 2H, C, B]
ggml_tensor* upsample(ggml_context* ctx, const Conv2d& conv, ggml_tensor* x);
// t_freq [model_channels, B] -> [T, B]: linear, SiLU, linear
ggml_tensor* timestep_embedding(ggml_context* ctx, const Linear& in, const Linear& out, ggml_tensor* t_freq);

}  // namespace sdn
