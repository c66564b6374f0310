// The CLIP text transformer (transformers' CLIPTextModel, as SD1.x's FrozenCLIPEmbedder and the
// OpenCLIP towers of SD2.x/SDXL mapped onto its names): token + position embeddings, pre-LN
// transformer layers with causal self-attention, a final layer norm. Width, depth, vocabulary,
// positions and MLP width come from the weights; the head count and activation, which shapes
// cannot tell, from the caller.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ggml.h"
#include "nn/layers.h"
#include "nn/weight_lookup.h"

namespace sdn {

// One encoder layer; keys relative to "<prefix>encoder.layers.N.".
struct ClipTextLayer {
  LayerNorm ln1;      // "layer_norm1.{weight,bias}"          [width]
  Linear q_proj;      // "self_attn.q_proj.{weight,bias}"     [width, width]
  Linear k_proj;      // "self_attn.k_proj.{weight,bias}"     [width, width]
  Linear v_proj;      // "self_attn.v_proj.{weight,bias}"     [width, width]
  Linear out_proj;    // "self_attn.out_proj.{weight,bias}"   [width, width]
  LayerNorm ln2;      // "layer_norm2.{weight,bias}"          [width]
  Linear fc1;         // "mlp.fc1.{weight,bias}"              [width, intermediate] (ggml ne)
  Linear fc2;         // "mlp.fc2.{weight,bias}"              [intermediate, width] (ggml ne)
};

class ClipTextEncoder {
 public:
  // Keys relative to `prefix` (e.g. "cond_stage_model.transformer.text_model.").
  ggml_tensor* token_embedding = nullptr;     // [width, vocab]     <- "embeddings.token_embedding.weight" [vocab, width]
  ggml_tensor* position_embedding = nullptr;  // [width, positions] <- "embeddings.position_embedding.weight" [positions, width]
  std::vector<ClipTextLayer> layers;          // "encoder.layers.0" ... (consecutive from 0)
  LayerNorm final_norm;                       // "final_layer_norm.{weight,bias}" [width]
  ggml_tensor* text_projection = nullptr;     // [width, proj] <- "text_projection" [proj, width] (HF Linear
                                              // orientation, name_map.cpp); optional: SDXL's bigG pools through it

  int64_t width = 0;
  int64_t vocab = 0;
  int64_t positions = 0;
  int64_t intermediate = 0;
  int heads = 0;
  bool quick_gelu = true;  // x·σ(1.702x) (OpenAI CLIP); false: erf GELU (OpenCLIP)

  // `heads` 0: width / 64. Throws ModelCompatibility naming the first missing or misshapen
  // tensor, InvalidArgument for a head count that does not divide the width.
  static ClipTextEncoder load(WeightLookup& w, const std::string& prefix, int heads, bool quick_gelu);

  int layer_count() const { return static_cast<int>(layers.size()); }

  // Throws InvalidArgument unless ids holds windows × positions ids, each in [0, vocab +
  // extra_rows), and 1 ≤ clip_skip ≤ layers. Call before build(): ggml asserts on out-of-range rows.
  void check_inputs(const std::vector<int32_t>& ids, int windows, int clip_skip, int64_t extra_rows = 0) const;

  // Vectors that take the place of token embeddings (textual inversion): `rows` F32 [width, m]
  // written over the token rows at the flat positions `at` (I32 [m], window·positions + index).
  struct Substitution {
    ggml_tensor* rows = nullptr;
    ggml_tensor* at = nullptr;
  };

  struct Outputs {
    ggml_tensor* hidden = nullptr;  // [width, positions, windows]
    ggml_tensor* pooled = nullptr;  // [proj, windows], when asked for
  };
  // ids: I32 [positions, windows] -> hidden states: the output of layer (layers - clip_skip),
  // through the final layer norm unless `norm_hidden` is false (SDXL takes them raw). With
  // `eos_rows` (I32 [windows]: window·positions + the EOS token's index in it), also the pooled
  // vector of each window: the last layer's output, normed, at the EOS token, times
  // text_projection (OpenCLIP's and HF CLIPTextModelWithProjection's text_embeds); the
  // projection must be there (ModelCompatibility). With `substitution`, its rows replace the
  // token embeddings at its positions (the ids there only need to be valid).
  Outputs build(ggml_context* ctx, ggml_tensor* ids, int clip_skip, bool norm_hidden = true,
                ggml_tensor* eos_rows = nullptr, const Substitution* substitution = nullptr) const;

  // Upper bounds for sizing the graph context.
  size_t graph_nodes() const { return 128 + 128 * layers.size(); }
  // Largest activation, in floats, for `windows` windows (the MLP or the attention scores).
  double activation_elements(int windows) const;
};

}  // namespace sdn
