#include "pipeline/hires.h"

#include <chrono>
#include <cmath>
#include <mutex>

#include "core/error.h"
#include "pipeline/upscaler.h"
#include "sample/rng.h"

namespace sdn {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

void check_hires(const GenerateParams& p) {
  const HiresParams& h = p.hires;
  if (h.width % 8 || h.height % 8) fail(ErrorCode::InvalidArgument, "the hires size must be a multiple of 8");
  if (p.init_image || p.mask || !p.init_latents.empty())
    fail(ErrorCode::InvalidArgument, "the hires fix follows text-to-image: no init image, mask or init latents");
  if (h.run_steps < 1 || h.run_steps > h.schedule_steps)
    fail(ErrorCode::InvalidArgument, "the hires pass must run 1 … schedule_steps steps");
  if (h.upscaler && !h.pixel_space) fail(ErrorCode::InvalidArgument, "an ESRGAN hires upscaler works in pixel space");
}

// A part of `job` whose steps report as `job`'s after `before`, of `total`.
struct JobPart : JobControl {
  JobPart(const JobControl& job, int before, int total) : JobControl(&job) {
    set_progress_sink([&job, before, total](const Progress& s) { job.report(before + s.step, total, s.preview); });
  }
};

Image resize_pixels(const Image& image, int width, int height, ResizeFilter filter) {
  if (image.width == width && image.height == height) return image;
  // Planar in [0, 1]; the filter's overshoot is clamped when the pixels are rounded back.
  return planar_to_pixels(resize_planes(pixels_to_planar(image, 0.0f, 1.0f), width, height, filter, false), 0.0f, 1.0f);
}

// One image's first-pass latent at the target size: interpolated as a latent, or decoded,
// enlarged as pixels and encoded again (its posterior sampled with the image's seed).
Latent enlarge(Model& model, const GenerateParams& p, const Latent& latent, uint64_t seed, const JobControl& quiet) {
  const HiresParams& h = p.hires;
  if (!h.pixel_space) return resize_planes(latent, h.width / 8, h.height / 8, h.filter, h.antialias);
  Image pixels;
  {
    std::lock_guard<std::mutex> lock(model.compute_mutex());
    pixels = model.decode_latent(latent, p.vae_scale, p.vae_tiling, quiet);
  }
  quiet.throw_if_cancelled();
  if (h.upscaler) {
    UpscaleParams up;
    up.tile = h.upscaler_tile;
    up.overlap = h.upscaler_overlap;
    pixels = h.upscaler->upscale(pixels, up, quiet);
    // The network's own factor rarely lands on the target: the rest with Lanczos, as the webui does.
    pixels = resize_pixels(pixels, h.width, h.height, ResizeFilter::Lanczos);
  } else {
    pixels = resize_pixels(pixels, h.width, h.height, h.filter);
  }
  quiet.throw_if_cancelled();
  std::lock_guard<std::mutex> lock(model.compute_mutex());
  const std::unique_ptr<Rng> rng = make_rng(parse_rng_kind(p.rng), seed);
  return latent_from_moments(model.encode_image_moments(pixels, p.vae_tiling, quiet), rng.get(), p.vae_scale);
}

}  // namespace

GenerateResult generate_hires(Model& model, const GenerateParams& p, const JobControl& job) {
  check_hires(p);
  const int batch = p.batch_count;
  const int total = (p.steps + p.hires.run_steps) * batch;
  const JobControl quiet(&job);
  if (p.decode && !p.tae_decoder) {  // a target the VAE cannot decode is refused before any work
    std::lock_guard<std::mutex> lock(model.compute_mutex());
    model.check_decode_size(p.hires.width / 8, p.hires.height / 8, p.vae_tiling);
  }

  // 1. The first pass, kept as latents.
  GenerateParams first = p;
  first.hires = HiresParams();
  first.decode = false;
  first.tae_decoder = nullptr;
  GenerateResult result = generate(model, first, JobPart(job, 0, total));

  // 2. Each latent at the target size.
  auto t0 = Clock::now();
  GenerateParams second = p;
  second.hires = HiresParams();
  second.width = p.hires.width;
  second.height = p.hires.height;
  second.steps = p.hires.schedule_steps;
  second.init_latent_steps = p.hires.run_steps;
  // The ControlNets guide the second pass too, with their hints at its size (as the webui's
  // extension does by default), each active in the same fraction of that pass's steps.
  for (ControlNetUse& c : second.control_nets) {
    if (c.hires_image.width == 0) fail(ErrorCode::InvalidArgument, "a ControlNet's hint for the hires pass is missing");
    c.image = std::move(c.hires_image);
  }
  for (int i = 0; i < batch; ++i) {
    job.throw_if_cancelled();
    second.init_latents.push_back(enlarge(model, p, result.latents[i], p.seed + static_cast<uint64_t>(i), quiet));
  }
  result.latents.clear();
  result.hires_upscale_ms = ms_since(t0);

  // 3. The image-to-image pass at the target size, and the decode.
  const GenerateResult refined = generate(model, second, JobPart(job, p.steps * batch, total));
  result.images = refined.images;
  result.latents = refined.latents;
  result.hires_steps_run = refined.steps_run;
  result.text_encode_ms += refined.text_encode_ms;
  result.lora_ms += refined.lora_ms;
  result.hires_sampling_ms = refined.sampling_ms;
  result.decode_ms = refined.decode_ms;
  return result;
}

}  // namespace sdn
