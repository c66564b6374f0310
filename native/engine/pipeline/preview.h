// Live previews during sampling: a small picture of the sampler's current denoised estimate
// (D(x, σ) of the step's last model call, guided — where the image is heading, not the noisy
// x), made every `interval` steps and at the last step, to travel with that step's progress.
#pragma once

#include <memory>
#include <string>

#include "core/job_control.h"
#include "pipeline/autoencoder.h"
#include "pipeline/image.h"

namespace sdn {

struct PreviewParams {
  // "none" (or empty), "latent2rgb": a linear projection of the 4 latent channels to RGB,
  // "tae": the tiny autoencoder's decoder (needs `tae`).
  std::string method = "none";
  int interval = 1;                       // sampler steps between previews, >= 1
  std::string latent_format = "sd";       // whose latent space latent2rgb reads: "sd" (SD1.x/2.x) or "sdxl"
  std::shared_ptr<TinyAutoencoder> tae;   // a decoder taking the sampler's (scaled) latents
};

// A 4-channel latent (as the sampler holds it, scaled) -> 8-bit RGB of 8× its size: each cell's
// RGB in [-1, 1] is a fixed affine map of its 4 channels, per latent space, then (v + 1) / 2 clamped to [0, 1]
// and rounded. Upscaled by nearest neighbour: each cell becomes an 8×8 block, which costs
// nothing and shows exactly what the projection gives (the preview is a rough guide anyway).
enum class LatentFormat { Sd, Sdxl };
// "sd" (or empty) / "sdxl"; InvalidArgument otherwise.
LatentFormat parse_latent_format(const std::string& name);
Image latent2rgb(const Latent& latent, LatentFormat format = LatentFormat::Sd);

// Used by the sampler loop of one job. Checks its params on construction (InvalidArgument).
class PreviewMaker {
 public:
  explicit PreviewMaker(const PreviewParams& params);

  // Whether any step gets a preview (the caller then keeps the latest denoised estimate).
  bool enabled() const { return method_ != Method::None; }
  // The preview for 1-based `step` of `steps` of one image's sampling, or null when none is
  // due: at every multiple of the interval and at the last step. `denoised` is the step's
  // denoised estimate; `job` cancels a TAE decode.
  std::shared_ptr<const ProgressImage> at(int step, int steps, const Latent& denoised, const JobControl& job) const;

 private:
  enum class Method { None, Latent2Rgb, Tae };
  Method method_ = Method::None;
  int interval_ = 1;
  LatentFormat format_ = LatentFormat::Sd;
  std::shared_ptr<TinyAutoencoder> tae_;
};

}  // namespace sdn
