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
#include "pipeline/conditioner.h"
#include "pipeline/controlnet.h"
#include "pipeline/image.h"
#include "pipeline/latent_resize.h"
#include "pipeline/model.h"
#include "pipeline/preview.h"
#include "sample/denoiser.h"

namespace sdn {

class EsrganUpscaler;

// The hires fix (pipeline/hires.h): the job's images made at width × height, enlarged, then
// refined by an image-to-image pass at the target size. lib/ resolves sizes and step counts.
struct HiresParams {
  int width = 0, height = 0;  // the target size; 0: no hires pass
  int schedule_steps = 0;     // the second pass's schedule has this many steps …
  int run_steps = 0;          // … of which the last run_steps run
  // How the first pass's result is enlarged: in latent space with `filter` (and `antialias`),
  // or in pixel space (decode, enlarge, encode) with `filter` or an ESRGAN `upscaler` (whose
  // output is brought to the target size with Lanczos).
  bool pixel_space = false;
  ResizeFilter filter = ResizeFilter::Bilinear;
  bool antialias = false;
  std::shared_ptr<EsrganUpscaler> upscaler;
  int upscaler_tile = 128, upscaler_overlap = 32;
  bool enabled() const { return width > 0 && height > 0; }
};

struct GenerateParams {
  ConditionerParams conditioning;  // prompts, text encoders, size conditioning
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

  // Image-to-image from latents (the hires fix's second pass): image i starts from
  // init_latents[i] (scaled, width/8 × height/8), noised to the start of the schedule's last
  // init_latent_steps steps; nothing is encoded.
  std::vector<Latent> init_latents;
  int init_latent_steps = 0;
  HiresParams hires;

  PreviewParams preview;           // live previews with the step progress (pipeline/preview.h)

  // LoRAs applied for this job (lora/adapter_set.h); the model keeps the set for the next job.
  std::vector<LoraUse> loras;

  // ControlNets (pipeline/controlnet.h): each one's residuals × its strength, summed over those
  // active in a step, go into the UNet; a step with none active runs the plain UNet.
  std::vector<ControlNetUse> control_nets;
};

struct GenerateResult {
  std::vector<Image> images;    // when decoding
  std::vector<Latent> latents;  // when not: as the sampler leaves them (scaled)
  int steps_run = 0;            // sampler steps per image (fewer than steps for image-to-image)
  double text_encode_ms = 0, image_encode_ms = 0, sampling_ms = 0, decode_ms = 0;
  double lora_ms = 0;         // applying the LoRAs (0 when the model's kept set was reused)
  bool lora_reused = false;   // the model's kept LoRA set served this job as it was
  size_t lora_bytes = 0;      // device bytes the LoRA set holds
  // The hires fix: its steps per image, enlarging the first pass's result (in pixel space
  // with its decode and encode), and its sampling.
  int hires_steps_run = 0;
  double hires_upscale_ms = 0, hires_sampling_ms = 0;
  double control_net_ms = 0;  // of sampling_ms: evaluating the ControlNets (with summing their residuals)
};

// Sampler steps an image-to-image job runs: ceil(steps × strength), in [0, steps].
int steps_for_strength(int steps, float strength);

// Progress: one step per sampler step run, over all images (steps_run × batch_count in total).
// Throws InvalidArgument, ModelCompatibility (a component missing), Resource, Aborted.
GenerateResult generate(Model& model, const GenerateParams& params, const JobControl& job);

}  // namespace sdn
