#include "pipeline/txt2img.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "core/error.h"
#include "pipeline/unet_runner.h"
#include "sample/rng.h"
#include "sample/samplers.h"
#include "sample/schedule.h"

namespace sdn {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Hidden states [windows][positions][width] of a prompt, its token weights applied as the
// webui does per window: scale each token's state by its weight, then rescale the window so
// its mean is what it was before weighting.
std::vector<float> encode_prompt(Model& model, const PromptTokens& p, const TextEncoderParams& te, const JobControl& job) {
  if (p.windows <= 0 || p.ids.empty() || p.ids.size() % p.windows != 0 || p.weights.size() != p.ids.size())
    fail(ErrorCode::InvalidArgument, "prompt tokens: ids and weights must fill whole windows");
  std::vector<float> z = model.encode_tokens(p.ids, p.windows, te, job);
  const size_t positions = p.ids.size() / p.windows;
  const size_t width = z.size() / p.ids.size();
  for (int w = 0; w < p.windows; ++w) {
    float* zw = z.data() + w * positions * width;
    const float* weights = p.weights.data() + w * positions;
    bool weighted = false;
    for (size_t t = 0; t < positions; ++t) weighted = weighted || weights[t] != 1.0f;
    if (!weighted) continue;
    double before = 0, after = 0;
    for (size_t i = 0; i < positions * width; ++i) before += zw[i];
    for (size_t t = 0; t < positions; ++t) {
      for (size_t c = 0; c < width; ++c) zw[t * width + c] *= weights[t];
    }
    for (size_t i = 0; i < positions * width; ++i) after += zw[i];
    if (after != 0) {
      const float k = static_cast<float>(before / after);
      for (size_t i = 0; i < positions * width; ++i) zw[i] *= k;
    }
  }
  return z;
}

// Appends `pad` (one window's states) until `z` holds `windows` windows: the webui pads the
// shorter of prompt and negative prompt with the empty prompt's encoding.
void pad_windows(std::vector<float>& z, size_t window_floats, size_t windows, const std::vector<float>& pad) {
  while (z.size() < windows * window_floats) z.insert(z.end(), pad.begin(), pad.begin() + window_floats);
}

}  // namespace

GenerateResult generate(Model& model, const GenerateParams& p, const JobControl& job) {
  if (p.width <= 0 || p.height <= 0 || p.width % 8 || p.height % 8)
    fail(ErrorCode::InvalidArgument, "width and height must be positive multiples of 8");
  if (p.batch_count < 1) fail(ErrorCode::InvalidArgument, "batch count must be at least 1");
  const SamplerKind sampler = parse_sampler(p.sampler);
  const SchedulerKind scheduler = parse_scheduler(p.scheduler);
  const RngKind rng_kind = parse_rng_kind(p.rng);
  const DiscreteSchedule schedule;
  const std::vector<float> sigmas = make_sigmas(scheduler, p.steps, schedule);

  std::lock_guard<std::mutex> lock(model.compute_mutex());
  GenerateResult result;
  // The stages' own progress (layers, graph chunks) stays out of the job's: it reports sampler steps.
  const JobControl quiet(&job);

  // 1. Text: the prompt and (with guidance) the negative prompt, to equal lengths.
  auto t0 = Clock::now();
  const bool guided = p.cfg_scale != 1.0f;
  std::vector<float> cond = encode_prompt(model, p.prompt, p.text_encoder, quiet);
  std::vector<float> uncond;
  if (guided) {
    uncond = encode_prompt(model, p.negative, p.text_encoder, quiet);
    if (p.prompt.windows != p.negative.windows) {
      const std::vector<float> empty = encode_prompt(model, p.empty, p.text_encoder, quiet);
      const size_t window_floats = empty.size() / p.empty.windows;
      const size_t windows = std::max(p.prompt.windows, p.negative.windows);
      pad_windows(cond, window_floats, windows, empty);
      pad_windows(uncond, window_floats, windows, empty);
    }
  }
  const int tokens = static_cast<int>(p.prompt.ids.size() / p.prompt.windows) * std::max(p.prompt.windows, guided ? p.negative.windows : 0);
  // Batch order [uncond, cond]: one UNet evaluation gives both.
  std::vector<float> context = guided ? uncond : cond;
  if (guided) context.insert(context.end(), cond.begin(), cond.end());
  const int batch = guided ? 2 : 1;
  result.text_encode_ms = ms_since(t0);

  // 2. The sampler loop, one image at a time (image i: seed + i).
  const int channels = 4, lh = p.height / 8, lw = p.width / 8;
  const size_t latent_size = static_cast<size_t>(channels) * lh * lw;
  std::vector<Latent> latents;
  t0 = Clock::now();
  // One graph for the whole loop, allocated once; released before the VAE needs the runtime.
  UnetShape shape;
  shape.batch = batch;
  shape.channels = channels;
  shape.height = lh;
  shape.width = lw;
  shape.context_tokens = tokens;
  auto unet = std::make_unique<UnetRunner>(model.weight_lookup(), model.runtime(), shape, p.unet);
  if (unet->out_channels() != channels)
    fail(ErrorCode::ModelCompatibility, "the UNet outputs " + std::to_string(unet->out_channels()) + " channels, the latent has 4");
  for (int image = 0; image < p.batch_count; ++image) {
    std::unique_ptr<Rng> rng = make_rng(rng_kind, p.seed + static_cast<uint64_t>(image));
    std::vector<float> x(latent_size);
    rng->randn(x.data(), x.size());
    for (float& v : x) v *= sigmas.front();

    // D(x, sigma): the UNet's prediction turned into a denoised latent (k-diffusion's
    // discrete-model wrappers), guided: D = D_u + cfg (D_c - D_u).
    std::vector<float> in(latent_size * batch), timesteps(batch);
    Denoiser denoise = [&](const float* xs, float sigma, float* out) {
      const float c_in = 1.0f / std::sqrt(sigma * sigma + 1.0f);
      std::fill(timesteps.begin(), timesteps.end(), schedule.sigma_to_t(sigma));
      for (int b = 0; b < batch; ++b) {
        for (size_t i = 0; i < latent_size; ++i) in[b * latent_size + i] = xs[i] * c_in;
      }
      std::vector<float> y = unet->run(in, timesteps, context, quiet, /*progress_steps=*/0);
      for (int b = 0; b < batch; ++b) {
        float* yb = y.data() + b * latent_size;
        for (size_t i = 0; i < latent_size; ++i) {
          if (p.prediction == Prediction::Epsilon) {
            yb[i] = xs[i] - sigma * yb[i];
          } else {  // v: c_skip x + c_out v
            const float s2 = sigma * sigma + 1.0f;
            yb[i] = xs[i] / s2 - yb[i] * sigma / std::sqrt(s2);
          }
        }
      }
      for (size_t i = 0; i < latent_size; ++i)
        out[i] = guided ? y[i] + p.cfg_scale * (y[latent_size + i] - y[i]) : y[i];
    };

    // Progress over all images: this image's steps after the earlier ones'.
    JobControl step_job(&job);
    step_job.set_progress_sink([&job, image, &p](const Progress& s) { job.report(image * p.steps + s.step, p.steps * p.batch_count); });
    sample(sampler, x, sigmas, denoise, *rng, step_job);
    latents.push_back({channels, lw, lh, std::move(x)});
  }
  unet.reset();
  result.sampling_ms = ms_since(t0);

  // 3. Decode.
  if (!p.decode) {
    result.latents = std::move(latents);
    return result;
  }
  t0 = Clock::now();
  for (const Latent& latent : latents) {
    job.throw_if_cancelled();
    result.images.push_back(model.decode_latent(latent, p.vae_scale, quiet));
  }
  result.decode_ms = ms_since(t0);
  return result;
}

}  // namespace sdn
