#include "pipeline/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "core/error.h"
#include "io/name_map.h"
#include "nn/unet.h"
#include "pipeline/conditioner.h"
#include "pipeline/hires.h"
#include "pipeline/mask.h"
#include "pipeline/preview.h"
#include "pipeline/unet_runner.h"
#include "sample/rng.h"
#include "sample/denoiser.h"
#include "sample/samplers.h"
#include "sample/schedule.h"

namespace sdn {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// What an init image (and mask) give the sampler loop.
struct ImageConditioning {
  std::optional<Latent> init;      // the encoded init image, scaled as the sampler works
  std::optional<Mask> pixel_mask;  // the blurred mask, for the final composite
  std::vector<float> keep_mask;    // [lh][lw]: 1 = sample freely, 0 = keep the init latent (standard UNets)
  std::vector<float> unet_extra;   // [extra channels][lh][lw]: an inpainting UNet's mask and masked-image latent
};

// The init image encoded (mean + std·noise, the noise from an RNG seeded with the job's seed,
// as stable-diffusion.cpp draws it), the mask softened and brought to latent size, and for an
// inpainting UNet (`extra_channels` 5) its conditioning: [mask, masked-image latent], with
// stable-diffusion.cpp's choices where no init image or mask is given (all repainted; a zero
// latent without an init image).
ImageConditioning condition_on_image(Model& model, const GenerateParams& p, RngKind rng_kind, int extra_channels,
                                     const JobControl& job) {
  ImageConditioning c;
  const int lh = p.height / 8, lw = p.width / 8;
  const size_t cells = size_t(lh) * lw;
  std::unique_ptr<Rng> rng = make_rng(rng_kind, p.seed);
  const auto encode = [&](const Image& image) {
    return latent_from_moments(model.encode_image_moments(image, p.vae_tiling, job), rng.get(), p.vae_scale);
  };
  std::optional<Mask> mask;
  if (p.mask) mask = mask_from_pixels(*p.mask);
  if (p.init_image) {
    c.init = encode(*p.init_image);
    if (c.init->channels != 4 || c.init->width != lw || c.init->height != lh)
      fail(ErrorCode::ModelCompatibility, "the VAE encoder makes a " + std::to_string(c.init->channels) + "-channel " +
                                              std::to_string(c.init->width) + "x" + std::to_string(c.init->height) +
                                              " latent, the UNet takes 4 channels of " + std::to_string(lw) + "x" + std::to_string(lh));
  }
  if (mask) {
    c.pixel_mask = blur_mask(*mask, p.mask_blur);
    if (extra_channels == 0) c.keep_mask = downsample_mean(*c.pixel_mask, 8).data;
  }
  if (extra_channels == 0) return c;
  if (extra_channels != 5)
    fail(ErrorCode::ModelCompatibility, "the UNet takes " + std::to_string(4 + extra_channels) +
                                            " input channels; 4 (standard) or 9 (inpainting) are supported");
  // Inpainting UNet input after the noisy latent: the mask (1 channel), then the latent of the
  // image with the repainted area grayed out.
  c.unet_extra.assign(cells * 5, 0.0f);
  if (mask) {
    const Mask cellmask = downsample_any(*mask, 8);
    std::copy(cellmask.data.begin(), cellmask.data.end(), c.unet_extra.begin());
  } else {
    std::fill(c.unet_extra.begin(), c.unet_extra.begin() + cells, 1.0f);
  }
  if (p.init_image) {
    Mask all{p.width, p.height, std::vector<float>(size_t(p.width) * p.height, 1.0f)};
    const Latent masked = encode(masked_image(*p.init_image, mask ? *mask : all));
    std::copy(masked.data.begin(), masked.data.end(), c.unet_extra.begin() + cells);
  }
  return c;
}

void check_image_size(const std::optional<Image>& image, const GenerateParams& p, const char* what) {
  if (image && (image->width != p.width || image->height != p.height))
    fail(ErrorCode::InvalidArgument, std::string(what) + " is " + std::to_string(image->width) + "x" + std::to_string(image->height) +
                                         ", the job " + std::to_string(p.width) + "x" + std::to_string(p.height));
}

// Latents to start from (the hires pass): one per image, of the job's latent size.
void check_init_latents(const GenerateParams& p) {
  if (p.init_latents.empty()) return;
  if (p.init_image) fail(ErrorCode::InvalidArgument, "init latents and an init image exclude each other");
  if (p.init_latents.size() != size_t(p.batch_count)) fail(ErrorCode::InvalidArgument, "one init latent per image is needed");
  if (p.init_latent_steps < 1 || p.init_latent_steps > p.steps)
    fail(ErrorCode::InvalidArgument, "the steps run from init latents must be in [1, steps]");
  for (const Latent& l : p.init_latents)
    if (l.channels != 4 || l.width != p.width / 8 || l.height != p.height / 8 || l.data.size() != size_t(4) * l.width * l.height)
      fail(ErrorCode::InvalidArgument, "an init latent is not 4 × " + std::to_string(p.width / 8) + " × " + std::to_string(p.height / 8));
}

// The ControlNets' hints at the job's size, their factors and windows in range, each network once
// (one runtime: one graph at a time).
void check_control_nets(const GenerateParams& p) {
  for (size_t i = 0; i < p.control_nets.size(); ++i) {
    const ControlNetUse& c = p.control_nets[i];
    if (!c.net) fail(ErrorCode::InvalidArgument, "a ControlNet use has no network");
    check_image_size(std::optional<Image>(c.image), p, "the control image");
    if (!(std::isfinite(c.strength) && c.start >= 0.0f && c.start <= c.end && c.end <= 1.0f))
      fail(ErrorCode::InvalidArgument, "a ControlNet's strength must be finite and 0 <= start <= end <= 1");
    for (size_t j = 0; j < i; ++j)
      if (p.control_nets[j].net == c.net) fail(ErrorCode::InvalidArgument, "the same ControlNet is used twice in one job");
  }
}

// Sum over the ControlNets active at step `step` of `steps_run` (start <= step / steps_run <=
// end, as the webui's ControlNet extension decides) of strength × residuals; false when none is.
bool control_residuals(const GenerateParams& p, std::vector<std::unique_ptr<ControlNetRunner>>& runners, int step,
                       int steps_run, const std::vector<float>& x, const std::vector<float>& timesteps,
                       const std::vector<float>& context, const std::vector<float>& y, const JobControl& job,
                       std::vector<std::vector<float>>& sum) {
  const double at = double(step) / double(steps_run);
  bool any = false;
  for (size_t k = 0; k < runners.size(); ++k) {
    const ControlNetUse& c = p.control_nets[k];
    if (!(at >= c.start && at <= c.end)) continue;
    const std::vector<std::vector<float>>& r = runners[k]->run(x, timesteps, context, y, job);
    if (!any) sum.resize(r.size());
    for (size_t i = 0; i < r.size(); ++i) {
      if (!any) sum[i].assign(r[i].size(), 0.0f);
      float* out = sum[i].data();
      for (size_t j = 0; j < r[i].size(); ++j) out[j] += c.strength * r[i][j];
    }
    any = true;
  }
  return any;
}

}  // namespace

int steps_for_strength(int steps, float strength) {
  // The tolerance keeps e.g. 20 × 0.35 (7.000001 in float) at 7 steps.
  return std::clamp(static_cast<int>(std::ceil(double(steps) * double(strength) - 1e-4)), 0, steps);
}

GenerateResult generate(Model& model, const GenerateParams& p, const JobControl& job) {
  if (p.hires.enabled()) return generate_hires(model, p, job);
  if (p.width <= 0 || p.height <= 0 || p.width % 8 || p.height % 8)
    fail(ErrorCode::InvalidArgument, "width and height must be positive multiples of 8");
  if (p.batch_count < 1) fail(ErrorCode::InvalidArgument, "batch count must be at least 1");
  if (p.mask && !p.init_image) fail(ErrorCode::InvalidArgument, "a mask needs an init image");
  if (!(p.strength >= 0.0f && p.strength <= 1.0f)) fail(ErrorCode::InvalidArgument, "strength must be in [0, 1]");
  if (p.mask_blur < 0) fail(ErrorCode::InvalidArgument, "the mask blur must be >= 0");
  check_image_size(p.init_image, p, "the init image");
  check_image_size(p.mask, p, "the mask");
  check_control_nets(p);
  check_init_latents(p);
  const SamplerKind sampler = parse_sampler(p.sampler);
  const SchedulerKind scheduler = parse_scheduler(p.scheduler);
  const RngKind rng_kind = parse_rng_kind(p.rng);
  const PreviewMaker previews(p.preview);
  const DiscreteSchedule schedule;
  // Image-to-image runs the schedule's last steps_run steps, from the sigma the strength reaches.
  std::vector<float> sigmas = make_sigmas(scheduler, p.steps, schedule);
  const int steps_run = !p.init_latents.empty() ? p.init_latent_steps : p.init_image ? steps_for_strength(p.steps, p.strength) : p.steps;
  sigmas.erase(sigmas.begin(), sigmas.end() - (steps_run + 1));

  std::lock_guard<std::mutex> lock(model.compute_mutex());
  if (p.decode && !p.tae_decoder) model.check_decode_size(p.width / 8, p.height / 8, p.vae_tiling);
  GenerateResult result;
  result.steps_run = steps_run;
  // The stages' own progress (layers, graph chunks) stays out of the job's: it reports sampler steps.
  const JobControl quiet(&job);

  // 0. The LoRAs, for this job only: whatever happens, the next job starts from the base weights.
  auto t0 = Clock::now();
  struct BaseWeightsOnExit {
    Model& model;
    ~BaseWeightsOnExit() { model.use_loras({}, JobControl()); }
  } base_on_exit{model};
  model.use_loras(p.loras, quiet);
  result.lora_ms = ms_since(t0);
  result.lora_reused = model.lora_set_reused();
  result.lora_bytes = model.lora_set_bytes();

  // 1. Text: the prompt and (with guidance) the negative prompt.
  t0 = Clock::now();
  const bool guided = p.cfg_scale != 1.0f;
  // Each stage maps its network's file pages in at once (weights used in place from the memory
  // map, on the CPU: one call, not a page fault per 4 KB) and lets them go once done (the next
  // job maps them back from the page cache): the job's peak RSS is its largest stage's network
  // and buffers, not every network's.
  model.weights().populate_pages_under(kInternalText1);
  model.weights().populate_pages_under(kInternalText2);
  const TextContext text = encode_text(model, p.conditioning, guided, quiet);
  model.weight_lookup().check_adapters_consumed();
  const std::vector<float>& context = text.states;
  const int batch = text.batch;
  std::vector<float> y;  // SDXL's vector conditioning, made once the UNet says its width
  result.text_encode_ms = ms_since(t0);
  model.weights().release_pages_under(kInternalText1);
  model.weights().release_pages_under(kInternalText2);

  // 2. The init image and mask, encoded before the UNet takes the runtime's buffers.
  t0 = Clock::now();
  const int channels = 4, lh = p.height / 8, lw = p.width / 8;
  const int unet_channels = static_cast<int>(UnetNetwork::input_channels(model.weight_lookup()));
  if (p.init_image) model.weights().populate_pages_under(kInternalVae + "encoder.");
  const ImageConditioning image = condition_on_image(model, p, rng_kind, unet_channels - channels, quiet);
  model.weights().release_pages_under(kInternalVae + "encoder.");
  result.image_encode_ms = ms_since(t0);

  // 3. The sampler loop, one image at a time (image i: seed + i).
  const size_t latent_size = static_cast<size_t>(channels) * lh * lw;
  const size_t extra_size = image.unet_extra.size();
  std::vector<Latent> latents;
  t0 = Clock::now();
  // One graph for the whole loop, allocated once; released before the VAE needs the runtime.
  std::unique_ptr<UnetRunner> unet;
  std::vector<std::unique_ptr<ControlNetRunner>> control_runners;  // their own runtimes, beside the UNet's
  if (steps_run > 0) {
    model.weights().populate_pages_under(kInternalUnet);
    UnetShape shape;
    shape.batch = batch;
    shape.channels = unet_channels;
    shape.height = lh;
    shape.width = lw;
    shape.context_tokens = text.tokens;
    shape.residuals = !p.control_nets.empty();
    unet = std::make_unique<UnetRunner>(model.weight_lookup(), model.runtime(), shape, p.unet);
    model.weight_lookup().check_adapters_consumed();
    if (unet->out_channels() != channels)
      fail(ErrorCode::ModelCompatibility, "the UNet outputs " + std::to_string(unet->out_channels()) + " channels, the latent has 4");
    y = vector_conditioning(text, p.conditioning.size, unet->adm_channels());
    for (const ControlNetUse& c : p.control_nets)
      control_runners.push_back(std::make_unique<ControlNetRunner>(*c.net, &unet->network(), c.image,
                                                                   ControlNetShape{batch, channels, lh, lw, text.tokens}, p.unet, quiet));
  }
  Latent denoised{channels, lw, lh, {}};  // the latest D(x, sigma), for previews
  for (int index = 0; index < p.batch_count; ++index) {
    if (steps_run == 0) {  // strength 0: the init image's latent as it is
      latents.push_back(*image.init);
      continue;
    }
    std::unique_ptr<Rng> rng = make_rng(rng_kind, p.seed + static_cast<uint64_t>(index));
    std::vector<float> noise(latent_size);
    rng->randn(noise.data(), noise.size());
    std::vector<float> x(latent_size);
    const float* init = !p.init_latents.empty() ? p.init_latents[index].data.data() : image.init ? image.init->data.data() : nullptr;
    for (size_t i = 0; i < latent_size; ++i) x[i] = (init ? init[i] : 0.0f) + noise[i] * sigmas.front();

    // D(x, sigma) over the UNet: each batch entry's input is the scaled latent, then an
    // inpainting UNet's extra channels (constant over the loop: written once).
    std::vector<float> in((latent_size + extra_size) * batch), timesteps(batch);
    for (int b = 0; b < batch; ++b)
      std::copy(image.unet_extra.begin(), image.unet_extra.end(), in.begin() + b * (latent_size + extra_size) + latent_size);
    // ControlNets take the 4-channel latent of every batch entry (without an inpainting UNet's extra channels).
    int current_step = 0;  // of this image's steps run, set by the progress sink below
    std::vector<float> control_x(control_runners.empty() ? 0 : latent_size * batch);
    std::vector<std::vector<float>> residuals;
    const ModelCall unet_call = [&](const float* x_in, float t, std::vector<float>& pred) {
      std::fill(timesteps.begin(), timesteps.end(), t);
      for (int b = 0; b < batch; ++b) std::copy(x_in, x_in + latent_size, in.begin() + b * (latent_size + extra_size));
      for (int b = 0; !control_runners.empty() && b < batch; ++b) std::copy(x_in, x_in + latent_size, control_x.begin() + b * latent_size);
      const auto control_start = Clock::now();
      const bool controlled = !control_runners.empty() &&
                              control_residuals(p, control_runners, current_step, steps_run, control_x, timesteps, context, y, quiet, residuals);
      result.control_net_ms += ms_since(control_start);
      pred = unet->run(in, timesteps, context, y, quiet, /*progress_steps=*/0, controlled ? &residuals : nullptr);
    };
    const Denoiser guided_denoiser = make_denoiser(p.prediction, schedule, latent_size, {batch, p.cfg_scale}, unet_call);
    const Denoiser denoise = [&](const float* xs, float sigma, float* out) {
      guided_denoiser(xs, sigma, out);
      if (previews.enabled()) denoised.data.assign(out, out + latent_size);
    };

    // Inpainting with a standard UNet: after every step the kept area is the init latent
    // noised to the step's end sigma (with the job's starting noise), the rest as sampled.
    StepHook keep_known;
    if (!image.keep_mask.empty()) {
      const size_t cells = size_t(lh) * lw;
      keep_known = [&, cells](int, float sigma_next, std::vector<float>& xs) {
        for (size_t i = 0; i < latent_size; ++i) {
          const float m = image.keep_mask[i % cells];
          xs[i] = m * xs[i] + (1.0f - m) * (image.init->data[i] + noise[i] * sigma_next);
        }
      };
    }

    // Progress over all images: this image's steps after the earlier ones'.
    JobControl step_job(&job);
    step_job.set_progress_sink([&job, index, steps_run, &p, &previews, &denoised, &quiet, &current_step](const Progress& s) {
      current_step = s.step;
      job.report(index * steps_run + s.step, steps_run * p.batch_count, previews.at(s.step, s.steps, denoised, quiet));
    });
    sample(sampler, x, sigmas, denoise, *rng, step_job, keep_known);
    latents.push_back({channels, lw, lh, std::move(x)});
  }
  control_runners.clear();
  unet.reset();
  model.weights().release_pages_under(kInternalUnet);
  result.sampling_ms = ms_since(t0);

  // 4. Decode; inpainting keeps the original pixels outside the (blurred) mask.
  if (!p.decode) {
    result.latents = std::move(latents);
    return result;
  }
  t0 = Clock::now();
  if (!p.tae_decoder) model.weights().populate_pages_under(kInternalVae + "decoder.");
  for (const Latent& latent : latents) {
    job.throw_if_cancelled();
    Image decoded = p.tae_decoder ? p.tae_decoder->decode(latent, quiet, p.tae_tiling) : model.decode_latent(latent, p.vae_scale, p.vae_tiling, quiet);
    if (image.pixel_mask) decoded = composite(*p.init_image, decoded, *image.pixel_mask);
    result.images.push_back(std::move(decoded));
  }
  model.weights().release_pages_under(kInternalVae);
  result.decode_ms = ms_since(t0);
  return result;
}

}  // namespace sdn
