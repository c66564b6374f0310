// The conditioner: what the UNet is conditioned on, from the prompts. It runs one or two text
// encoders over the prompt and (with guidance) the negative prompt and returns the context
// [batch][tokens][width], the pooled vectors, and for UNets with label_emb the vector y that
// sgm's conditioner builds from the pooled text and the size (and aesthetic) embeddings.
#pragma once

#include <cstdint>
#include <vector>

#include "core/job_control.h"
#include "pipeline/model.h"

namespace sdn {

// One prompt, tokenized: `windows` windows of `positions` ids with a weight per token
// ((word:1.3) syntax), as lib/text/prompt-weights.ts encodes it. `ids2`: the same tokens as the
// second text encoder takes them (its own padding id), empty when it takes `ids`.
struct PromptTokens {
  std::vector<int32_t> ids;
  std::vector<int32_t> ids2;
  std::vector<float> weights;
  int windows = 0;
};

// SDXL's micro-conditioning (sgm's original_size_as_tuple, crop_coords_top_left,
// target_size_as_tuple), in pixels; each becomes two 256-wide sinusoidal embeddings of y. The
// SDXL refiner takes an aesthetic score in place of the target size (one embedding): the
// prompt's, and the negative prompt's for the unconditional half (sgm's defaults 6 and 2.5).
struct SizeConditioning {
  int original_width = 0, original_height = 0;
  int crop_left = 0, crop_top = 0;
  int target_width = 0, target_height = 0;
  float aesthetic_score = 6.0f;
  float negative_aesthetic_score = 2.5f;
};

struct ConditionerParams {
  PromptTokens prompt;
  PromptTokens negative;  // the empty prompt's tokens when the user gave none
  PromptTokens empty;     // the empty prompt: pads the shorter of the two (webui)
  // One encoder (SD1.x, SD2.x, the SDXL refiner's bigG), or two whose hidden states are joined
  // per token (SDXL: CLIP-L, then OpenCLIP bigG, which also pools).
  std::vector<TextEncoderParams> text_encoders{TextEncoderParams{}};
  // SDXL with no negative prompt: its hidden states are zeros, not the empty prompt's encoding
  // (stable-diffusion.cpp's choice; the pooled vector in y stays the empty prompt's; lib/
  // decides when).
  bool zero_negative = false;
  SizeConditioning size;  // for UNets that take a vector y
};

// The UNet's text conditioning, in batch order [uncond, cond] with guidance so that one
// evaluation gives both.
struct TextContext {
  std::vector<float> states;  // [batch][tokens][width]
  std::vector<float> pooled;  // [batch][proj], or empty
  int tokens = 0;
  int batch = 1;
};

// Throws InvalidArgument (tokens that do not fill windows, no encoder or more than two),
// ModelCompatibility, Aborted.
TextContext encode_text(Model& model, const ConditionerParams& p, bool guided, const JobControl& job);

// The vector y of a UNet with label_emb, `adm` wide, for each batch entry: its pooled text, then
// equal-width sinusoidal embeddings of — six values (SDXL base) — original height, width, crop
// top, left, target height, width, or — five (the refiner) — original height, width, crop top,
// left, aesthetic score (sgm's ConcatTimestepEmbedderND, sizes as (h, w)). Empty for adm 0.
// ModelCompatibility when the width fits neither.
std::vector<float> vector_conditioning(const TextContext& text, const SizeConditioning& s, int adm);

}  // namespace sdn
