// The three jobs: text-to-image (prompt tokens -> text encoder -> the sampler loop over the UNet
// with classifier-free guidance -> VAE decoder), image-to-image (the loop starts from the
// encoded init image, noised to the strength) and inpainting (a mask keeps the rest of the init
// image, or conditions a 9-channel inpainting UNet). Everything that is policy (tokenizing,
// prompt syntax, defaults, resizing, which heads and scale a family uses) was decided in lib/
// and arrives here as plain data.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/job_control.h"
#include "pipeline/image.h"
#include "pipeline/model.h"
#include "pipeline/preview.h"

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
// target_size_as_tuple), in pixels; each becomes two 256-wide sinusoidal embeddings of y.
struct SizeConditioning {
  int original_width = 0, original_height = 0;
  int crop_left = 0, crop_top = 0;
  int target_width = 0, target_height = 0;
};

enum class Prediction { Epsilon, V };

struct GenerateParams {
  PromptTokens prompt;
  PromptTokens negative;       // the empty prompt's tokens when the user gave none
  PromptTokens empty;          // the empty prompt: pads the shorter of the two (webui)
  // One encoder (SD1.x, SD2.x), or two whose hidden states are joined per token (SDXL: CLIP-L,
  // then OpenCLIP bigG, which also pools).
  std::vector<TextEncoderParams> text_encoders{TextEncoderParams{}};
  // SDXL with no negative prompt: its hidden states are zeros, not the empty prompt's encoding
  // (stable-diffusion.cpp's choice; the pooled vector in y stays the empty prompt's; lib/
  // decides when).
  bool zero_negative = false;
  SizeConditioning size;       // for UNets that take a vector y (SDXL)
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
  bool decode = true;           // false: return the latents instead of images
  std::shared_ptr<TinyAutoencoder> tae_decoder;  // decode with this TAESD decoder instead of the model's VAE
  VaeTiling vae_tiling;         // the VAE's encode and decode in tiles (lib/ decides, 'auto' from memory)
  VaeTiling tae_tiling;         // the TAE decode in tiles (with tae_decoder)

  // Image-to-image and inpainting; without an init image, text-to-image.
  std::optional<Image> init_image;  // width × height, RGB(A), alpha ignored
  float strength = 0.75f;           // the last ceil(steps × strength) steps run; 0: the init image through the VAE
  std::optional<Image> mask;        // width × height, 1, 3 or 4 channels, white = repaint; needs init_image
  int mask_blur = 4;                // pixels: radius of the Gaussian that softens the mask's edge

  PreviewParams preview;           // live previews with the step progress (pipeline/preview.h)
};

struct GenerateResult {
  std::vector<Image> images;    // when decoding
  std::vector<Latent> latents;  // when not: as the sampler leaves them (scaled)
  int steps_run = 0;            // sampler steps per image (fewer than steps for image-to-image)
  double text_encode_ms = 0, image_encode_ms = 0, sampling_ms = 0, decode_ms = 0;
};

// Sampler steps an image-to-image job runs: ceil(steps × strength), in [0, steps].
int steps_for_strength(int steps, float strength);

// Progress: one step per sampler step run, over all images (steps_run × batch_count in total).
// Throws InvalidArgument, ModelCompatibility (a component missing), Resource, Aborted.
GenerateResult generate(Model& model, const GenerateParams& params, const JobControl& job);

}  // namespace sdn
