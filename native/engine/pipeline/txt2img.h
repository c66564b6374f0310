// Text-to-image: prompt tokens -> text encoder -> the sampler loop over the UNet with
// classifier-free guidance -> VAE decoder. Everything that is policy (tokenizing, prompt
// syntax, defaults, which heads and scale a family uses) was decided in lib/ and arrives here
// as plain data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/job_control.h"
#include "pipeline/image.h"
#include "pipeline/model.h"

namespace sdn {

// One prompt, tokenized: `windows` windows of `positions` ids with a weight per token
// ((word:1.3) syntax), as lib/text/prompt-weights.ts encodes it.
struct PromptTokens {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  int windows = 0;
};

enum class Prediction { Epsilon, V };

struct GenerateParams {
  PromptTokens prompt;
  PromptTokens negative;       // the empty prompt's tokens when the user gave none
  PromptTokens empty;          // the empty prompt: pads the shorter of the two (webui)
  TextEncoderParams text_encoder;
  UnetParams unet;
  Prediction prediction = Prediction::Epsilon;
  int width = 512, height = 512;
  int steps = 20;
  std::string sampler = "euler_a";
  std::string scheduler = "discrete";
  float cfg_scale = 7.0f;       // 1: the unconditional pass is skipped
  uint64_t seed = 0;
  std::string rng = "cuda";
  int batch_count = 1;          // image i uses seed + i
  float vae_scale = 0.18215f;   // latent scale factor of the family's VAE
  bool decode = true;           // false: return the latents (another decoder, e.g. a TAE, takes them)
};

struct GenerateResult {
  std::vector<Image> images;    // when decoding
  std::vector<Latent> latents;  // when not: as the sampler leaves them (scaled)
  double text_encode_ms = 0, sampling_ms = 0, decode_ms = 0;
};

// Progress: one step per sampler step over all images (steps × batch_count in total).
// Throws InvalidArgument, ModelCompatibility (a component missing), Resource, Aborted.
GenerateResult generate(Model& model, const GenerateParams& params, const JobControl& job);

}  // namespace sdn
