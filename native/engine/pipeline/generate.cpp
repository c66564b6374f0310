#include "pipeline/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "core/error.h"
#include "nn/unet.h"
#include "pipeline/mask.h"
#include "pipeline/preview.h"
#include "pipeline/unet_runner.h"
#include "sample/rng.h"
#include "sample/samplers.h"
#include "sample/schedule.h"

namespace sdn {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Applies a window's token weights as the webui does: scale each token's state by its weight,
// then rescale the window so its mean is what it was before weighting.
void weight_window(float* z, const float* weights, size_t positions, size_t width) {
  bool weighted = false;
  for (size_t t = 0; t < positions; ++t) weighted = weighted || weights[t] != 1.0f;
  if (!weighted) return;
  double before = 0, after = 0;
  for (size_t i = 0; i < positions * width; ++i) before += z[i];
  for (size_t t = 0; t < positions; ++t) {
    for (size_t c = 0; c < width; ++c) z[t * width + c] *= weights[t];
  }
  for (size_t i = 0; i < positions * width; ++i) after += z[i];
  if (after != 0) {
    const float k = static_cast<float>(before / after);
    for (size_t i = 0; i < positions * width; ++i) z[i] *= k;
  }
}

// A prompt through every text encoder: hidden states [windows][positions][width] with the
// encoders' widths joined per token, then weighted per window over the joined width (as
// stable-diffusion.cpp weights SDXL's 2048-wide states), and the pooled vector of the first
// window from the encoder that pools (empty when none does; never weighted).
struct PromptEncoding {
  std::vector<float> states;
  std::vector<float> pooled;
  size_t width = 0;
};

PromptEncoding encode_prompt(Model& model, const PromptTokens& p, const std::vector<TextEncoderParams>& encoders,
                             const JobControl& job) {
  if (p.windows <= 0 || p.ids.empty() || p.ids.size() % p.windows != 0 || p.weights.size() != p.ids.size() ||
      (!p.ids2.empty() && p.ids2.size() != p.ids.size()))
    fail(ErrorCode::InvalidArgument, "prompt tokens: ids and weights must fill whole windows");
  if (encoders.empty() || encoders.size() > 2) fail(ErrorCode::InvalidArgument, "one or two text encoders");
  const size_t positions = p.ids.size() / p.windows;
  std::vector<TextEncoding> outs;
  PromptEncoding e;
  for (size_t k = 0; k < encoders.size(); ++k) {
    const std::vector<int32_t>& ids = k == 1 && !p.ids2.empty() ? p.ids2 : p.ids;
    TextEncoding out = model.encode_tokens(ids, p.windows, encoders[k], job);
    if (!out.pooled.empty()) e.pooled.assign(out.pooled.begin(), out.pooled.begin() + out.pooled.size() / p.windows);
    e.width += out.hidden.size() / p.ids.size();
    outs.push_back(std::move(out));
  }
  if (outs.size() == 1) {
    e.states = std::move(outs[0].hidden);
  } else {  // joined per token: [encoder 1's width | encoder 2's width]
    e.states.resize(p.ids.size() * e.width);
    size_t offset = 0;
    for (const TextEncoding& out : outs) {
      const size_t width = out.hidden.size() / p.ids.size();
      for (size_t t = 0; t < p.ids.size(); ++t)
        std::copy_n(out.hidden.begin() + t * width, width, e.states.begin() + t * e.width + offset);
      offset += width;
    }
  }
  for (int w = 0; w < p.windows; ++w)
    weight_window(e.states.data() + w * positions * e.width, p.weights.data() + w * positions, positions, e.width);
  return e;
}

// Appends `pad` (one window's states) until `z` holds `windows` windows: the webui pads the
// shorter of prompt and negative prompt with the empty prompt's encoding.
void pad_windows(std::vector<float>& z, size_t window_floats, size_t windows, const std::vector<float>& pad) {
  while (z.size() < windows * window_floats) z.insert(z.end(), pad.begin(), pad.begin() + window_floats);
}

// The UNet's text conditioning: the prompt's hidden states and, with guidance, the negative
// prompt's, padded to equal lengths, in batch order [uncond, cond] so one evaluation gives both;
// the pooled vectors in the same order (SDXL).
struct TextContext {
  std::vector<float> states;  // [batch][tokens][width]
  std::vector<float> pooled;  // [batch][proj], or empty
  int tokens = 0;
  int batch = 1;
};

TextContext encode_text(Model& model, const GenerateParams& p, bool guided, const JobControl& job) {
  PromptEncoding cond = encode_prompt(model, p.prompt, p.text_encoders, job);
  TextContext c;
  c.tokens = static_cast<int>(p.prompt.ids.size() / p.prompt.windows) * std::max(p.prompt.windows, guided ? p.negative.windows : 0);
  if (!guided) {
    c.states = std::move(cond.states);
    c.pooled = std::move(cond.pooled);
    return c;
  }
  PromptEncoding uncond = encode_prompt(model, p.negative, p.text_encoders, job);
  // Hidden states only: the pooled vector of y stays the empty prompt's (stable-diffusion.cpp).
  if (p.zero_negative) std::fill(uncond.states.begin(), uncond.states.end(), 0.0f);
  if (p.prompt.windows != p.negative.windows) {
    const std::vector<float> empty = encode_prompt(model, p.empty, p.text_encoders, job).states;
    const size_t window_floats = empty.size() / p.empty.windows;
    const size_t windows = std::max(p.prompt.windows, p.negative.windows);
    pad_windows(cond.states, window_floats, windows, empty);
    pad_windows(uncond.states, window_floats, windows, p.zero_negative ? std::vector<float>(window_floats, 0.0f) : empty);
  }
  c.states = std::move(uncond.states);
  c.states.insert(c.states.end(), cond.states.begin(), cond.states.end());
  c.pooled = std::move(uncond.pooled);
  c.pooled.insert(c.pooled.end(), cond.pooled.begin(), cond.pooled.end());
  c.batch = 2;
  return c;
}

// The vector y of a UNet with label_emb (SDXL): each batch entry's pooled text, then the
// 256-wide sinusoidal embeddings of original height, width, crop top, left, target height,
// width (sgm's ConcatTimestepEmbedderND, sizes as (h, w)). -> [batch][adm]
std::vector<float> size_conditioned_y(const TextContext& text, const SizeConditioning& s, int adm) {
  if (adm == 0) return {};
  const size_t proj = text.pooled.size() / text.batch;
  if (text.pooled.empty() || proj >= size_t(adm) || (adm - proj) % 6 != 0)
    fail(ErrorCode::ModelCompatibility, "the UNet takes a " + std::to_string(adm) + "-wide vector y; the text encoders pool " +
                                            std::to_string(proj) + " values, which leave no six equal size embeddings");
  const int64_t each = static_cast<int64_t>((adm - proj) / 6);
  const std::vector<float> sizes = {float(s.original_height), float(s.original_width), float(s.crop_top),
                                    float(s.crop_left),       float(s.target_height),  float(s.target_width)};
  const std::vector<float> emb = sinusoidal_embedding(sizes, each);  // [6][each]
  std::vector<float> y;
  y.reserve(size_t(adm) * text.batch);
  for (int b = 0; b < text.batch; ++b) {
    y.insert(y.end(), text.pooled.begin() + b * proj, text.pooled.begin() + (b + 1) * proj);
    y.insert(y.end(), emb.begin(), emb.end());
  }
  return y;
}

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

}  // namespace

int steps_for_strength(int steps, float strength) {
  // The tolerance keeps e.g. 20 × 0.35 (7.000001 in float) at 7 steps.
  return std::clamp(static_cast<int>(std::ceil(double(steps) * double(strength) - 1e-4)), 0, steps);
}

GenerateResult generate(Model& model, const GenerateParams& p, const JobControl& job) {
  if (p.width <= 0 || p.height <= 0 || p.width % 8 || p.height % 8)
    fail(ErrorCode::InvalidArgument, "width and height must be positive multiples of 8");
  if (p.batch_count < 1) fail(ErrorCode::InvalidArgument, "batch count must be at least 1");
  if (p.mask && !p.init_image) fail(ErrorCode::InvalidArgument, "a mask needs an init image");
  if (!(p.strength >= 0.0f && p.strength <= 1.0f)) fail(ErrorCode::InvalidArgument, "strength must be in [0, 1]");
  if (p.mask_blur < 0) fail(ErrorCode::InvalidArgument, "the mask blur must be >= 0");
  check_image_size(p.init_image, p, "the init image");
  check_image_size(p.mask, p, "the mask");
  const SamplerKind sampler = parse_sampler(p.sampler);
  const SchedulerKind scheduler = parse_scheduler(p.scheduler);
  const RngKind rng_kind = parse_rng_kind(p.rng);
  const PreviewMaker previews(p.preview);
  const DiscreteSchedule schedule;
  // Image-to-image runs the schedule's last steps_run steps, from the sigma the strength reaches.
  std::vector<float> sigmas = make_sigmas(scheduler, p.steps, schedule);
  const int steps_run = p.init_image ? steps_for_strength(p.steps, p.strength) : p.steps;
  sigmas.erase(sigmas.begin(), sigmas.end() - (steps_run + 1));

  std::lock_guard<std::mutex> lock(model.compute_mutex());
  if (p.decode && !p.tae_decoder) model.check_decode_size(p.width / 8, p.height / 8, p.vae_tiling);
  GenerateResult result;
  result.steps_run = steps_run;
  // The stages' own progress (layers, graph chunks) stays out of the job's: it reports sampler steps.
  const JobControl quiet(&job);

  // 1. Text: the prompt and (with guidance) the negative prompt.
  auto t0 = Clock::now();
  const bool guided = p.cfg_scale != 1.0f;
  const TextContext text = encode_text(model, p, guided, quiet);
  const std::vector<float>& context = text.states;
  const int batch = text.batch;
  std::vector<float> y;  // SDXL's vector conditioning, made once the UNet says its width
  result.text_encode_ms = ms_since(t0);

  // 2. The init image and mask, encoded before the UNet takes the runtime's buffers.
  t0 = Clock::now();
  const int channels = 4, lh = p.height / 8, lw = p.width / 8;
  const int unet_channels = static_cast<int>(UnetNetwork::input_channels(model.weight_lookup()));
  const ImageConditioning image = condition_on_image(model, p, rng_kind, unet_channels - channels, quiet);
  result.image_encode_ms = ms_since(t0);

  // 3. The sampler loop, one image at a time (image i: seed + i).
  const size_t latent_size = static_cast<size_t>(channels) * lh * lw;
  const size_t extra_size = image.unet_extra.size();
  std::vector<Latent> latents;
  t0 = Clock::now();
  // One graph for the whole loop, allocated once; released before the VAE needs the runtime.
  std::unique_ptr<UnetRunner> unet;
  if (steps_run > 0) {
    UnetShape shape;
    shape.batch = batch;
    shape.channels = unet_channels;
    shape.height = lh;
    shape.width = lw;
    shape.context_tokens = text.tokens;
    unet = std::make_unique<UnetRunner>(model.weight_lookup(), model.runtime(), shape, p.unet);
    if (unet->out_channels() != channels)
      fail(ErrorCode::ModelCompatibility, "the UNet outputs " + std::to_string(unet->out_channels()) + " channels, the latent has 4");
    y = size_conditioned_y(text, p.size, unet->adm_channels());
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
    for (size_t i = 0; i < latent_size; ++i) x[i] = (image.init ? image.init->data[i] : 0.0f) + noise[i] * sigmas.front();

    // D(x, sigma): the UNet's prediction turned into a denoised latent (k-diffusion's
    // discrete-model wrappers), guided: D = D_u + cfg (D_c - D_u). An inpainting UNet's extra
    // channels follow the scaled latent in its input.
    std::vector<float> in((latent_size + extra_size) * batch), timesteps(batch);
    for (int b = 0; b < batch; ++b)  // constant over the loop: written once
      std::copy(image.unet_extra.begin(), image.unet_extra.end(), in.begin() + b * (latent_size + extra_size) + latent_size);
    Denoiser denoise = [&](const float* xs, float sigma, float* out) {
      const float c_in = 1.0f / std::sqrt(sigma * sigma + 1.0f);
      std::fill(timesteps.begin(), timesteps.end(), schedule.sigma_to_t(sigma));
      for (int b = 0; b < batch; ++b) {
        float* ib = in.data() + b * (latent_size + extra_size);
        for (size_t i = 0; i < latent_size; ++i) ib[i] = xs[i] * c_in;
      }
      std::vector<float> pred = unet->run(in, timesteps, context, y, quiet, /*progress_steps=*/0);
      for (int b = 0; b < batch; ++b) {
        float* yb = pred.data() + b * latent_size;
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
        out[i] = guided ? pred[i] + p.cfg_scale * (pred[latent_size + i] - pred[i]) : pred[i];
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
    step_job.set_progress_sink([&job, index, steps_run, &p, &previews, &denoised, &quiet](const Progress& s) {
      job.report(index * steps_run + s.step, steps_run * p.batch_count, previews.at(s.step, s.steps, denoised, quiet));
    });
    sample(sampler, x, sigmas, denoise, *rng, step_job, keep_known);
    latents.push_back({channels, lw, lh, std::move(x)});
  }
  unet.reset();
  result.sampling_ms = ms_since(t0);

  // 4. Decode; inpainting keeps the original pixels outside the (blurred) mask.
  if (!p.decode) {
    result.latents = std::move(latents);
    return result;
  }
  t0 = Clock::now();
  for (const Latent& latent : latents) {
    job.throw_if_cancelled();
    Image decoded = p.tae_decoder ? p.tae_decoder->decode(latent, quiet, p.tae_tiling) : model.decode_latent(latent, p.vae_scale, p.vae_tiling, quiet);
    if (image.pixel_mask) decoded = composite(*p.init_image, decoded, *image.pixel_mask);
    result.images.push_back(std::move(decoded));
  }
  result.decode_ms = ms_since(t0);
  return result;
}

}  // namespace sdn
