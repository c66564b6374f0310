// Model::decode_latent and Model::encode_image_moments: the loaded model's AutoencoderKL run
// on one image or latent, whole or in tiles, with the conversions between 8-bit interleaved
// pixels and the planar [-1, 1] floats the VAE works in; the compute-buffer estimate that
// decides tiling; and the posterior sample taken from the encoder's moments.
#include <algorithm>
#include <cmath>
#include <string>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "nn/autoencoder_kl.h"
#include "pipeline/graph.h"
#include "pipeline/model.h"
#include "pipeline/vae_tiling.h"
#include "sample/rng.h"

namespace sdn {

namespace {

constexpr int kProgressSteps = 16;
constexpr size_t kGraphNodes = 8192;
constexpr double kMaxSide = 65536;

void check_size(double elements, const std::string& what) {
  check_intermediate_size(elements, what + " is too large to process at once");
}

void check_decode_input(const VaeDecoder& decoder, const Latent& latent) {
  if (latent.channels != decoder.latent_channels()) {
    fail(ErrorCode::InvalidArgument, "latent has " + std::to_string(latent.channels) + " channels, the VAE decoder takes " +
                                         std::to_string(decoder.latent_channels()));
  }
  if (latent.width <= 0 || latent.height <= 0) fail(ErrorCode::InvalidArgument, "latent sides must be positive");
  const size_t cells = size_t(latent.width) * size_t(latent.height);
  if (latent.data.size() != cells * size_t(latent.channels)) {
    fail(ErrorCode::InvalidArgument, "latent data has " + std::to_string(latent.data.size()) + " values, channels*width*height is " +
                                         std::to_string(cells * size_t(latent.channels)));
  }
  const double f = decoder.upscale();
  if (double(latent.width) * f > kMaxSide || double(latent.height) * f > kMaxSide) {
    fail(ErrorCode::InvalidArgument, "the decoded image would be larger than 65536 pixels on a side");
  }
}

const VaeEncoder& check_encoder(const VaeEncoder& encoder) {
  if (encoder.image_channels() != 3) {
    fail(ErrorCode::ModelCompatibility, "the VAE encoder takes " + std::to_string(encoder.image_channels()) +
                                            " image channels, not RGB");
  }
  return encoder;
}

void check_encode_sides(const VaeEncoder& encoder, int width, int height) {
  const int f = encoder.downscale();
  if (width <= 0 || height <= 0 || width % f != 0 || height % f != 0) {
    fail(ErrorCode::InvalidArgument, "image sides must be positive multiples of " + std::to_string(f) + ", not " +
                                         std::to_string(width) + "x" + std::to_string(height));
  }
  if (width > kMaxSide || height > kMaxSide) fail(ErrorCode::InvalidArgument, "image sides must be at most 65536 pixels");
}

// A VAE half as the model's device runs it best: the CPU unfolds every convolution's input in f32
// (Conv2d::f32_columns: faster there, and no scaling against f16's range is needed); other
// devices keep f16 columns, with the inputs scaled where the family needs it
// (Model::set_vae_conv_input_scale).
template <typename Network>
Network prepared(Network net, bool cpu, float scale) {
  if (cpu) {
    net.for_each_conv([](Conv2d& c) { c.f32_columns = true; });
  } else if (scale != 1.0f) {
    net.for_each_conv([scale](Conv2d& c) { c.input_scale = scale; });
  }
  return net;
}

// The part of the input one pass sees: the whole of it, or one tile (tiles are never larger).
double pass_side(int side, int per_cell, const VaeTiling& tiling) {
  return tiling.enabled ? std::min<double>(side, double(tiling.tile) * per_cell) : side;
}

}  // namespace

Image Model::decode_latent(const Latent& latent, float scale_factor, const VaeTiling& tiling, const JobControl& job) {
  const VaeDecoder decoder = prepared(VaeDecoder::load(weight_lookup()), runtime().is_cpu(), vae_conv_input_scale());
  if (!std::isfinite(scale_factor) || scale_factor <= 0) {
    fail(ErrorCode::InvalidArgument, "the scale factor must be a positive finite number");
  }
  check_decode_input(decoder, latent);
  check_decode_size(latent.width, latent.height, tiling);

  Latent z = latent;
  for (float& v : z.data) v /= scale_factor;
  const GraphBuild build = [&](ggml_context* ctx, ggml_tensor* x) { return decoder.build(ctx, x); };
  const Latent rgb = tiling.enabled
                         ? run_tiled(runtime(), z, tiling, 1, decoder.upscale(), build, "vae.latent", kGraphNodes, job)
                         : run_planar(runtime(), z, "vae.latent", build, kGraphNodes, kProgressSteps, job);
  if (rgb.channels != 3) {
    fail(ErrorCode::ModelCompatibility, "the VAE decoder makes " + std::to_string(rgb.channels) + " channels, not RGB");
  }

  // Planar RGB about [-1, 1] -> 8-bit, rounded as the TAE path does.
  return planar_to_pixels(rgb, -1.0f, 1.0f);
}

void Model::check_decode_size(int latent_width, int latent_height, const VaeTiling& tiling) {
  const VaeDecoder decoder = prepared(VaeDecoder::load(weight_lookup()), runtime().is_cpu(), vae_conv_input_scale());
  if (tiling.enabled) check_tiling(tiling);
  check_size(decoder.peak_elements(pass_side(latent_width, 1, tiling), pass_side(latent_height, 1, tiling)),
             tiling.enabled ? "a tile of the latent" : "the latent");
  if (tiling.enabled) {
    const GraphBuild build = [&](ggml_context* ctx, ggml_tensor* x) { return decoder.build(ctx, x); };
    check_tiled_size(latent_width, latent_height, tiling, 1, int(decoder.latent_channels()), build, "vae.latent", kGraphNodes);
  }
}

Latent Model::encode_image_moments(const Image& image, const VaeTiling& tiling, const JobControl& job) {
  const VaeEncoder encoder = prepared(VaeEncoder::load(weight_lookup()), runtime().is_cpu(), vae_conv_input_scale());
  check_encoder(encoder);
  check_encode_sides(encoder, image.width, image.height);
  if (image.channels != 3 && image.channels != 4) fail(ErrorCode::InvalidArgument, "image must have 3 or 4 channels");
  const size_t plane = size_t(image.width) * size_t(image.height);
  if (image.data.size() != plane * size_t(image.channels)) {
    fail(ErrorCode::InvalidArgument, "image data has " + std::to_string(image.data.size()) + " bytes, width*height*channels is " +
                                         std::to_string(plane * size_t(image.channels)));
  }
  if (tiling.enabled) check_tiling(tiling);
  const int f = encoder.downscale();
  check_size(encoder.peak_elements(pass_side(image.width, f, tiling), pass_side(image.height, f, tiling)),
             tiling.enabled ? "a tile of the image" : "the image");

  // Pixels in [-1, 1], what the encoder was trained on.
  const Latent rgb = pixels_to_planar(image, -1.0f, 1.0f);
  const GraphBuild build = [&](ggml_context* ctx, ggml_tensor* x) { return encoder.build(ctx, x); };
  if (!tiling.enabled) return run_planar(runtime(), rgb, "vae.image", build, kGraphNodes, kProgressSteps, job);
  return run_tiled(runtime(), rgb, tiling, f, 1, build, "vae.image", kGraphNodes, job);
}

double Model::vae_compute_bytes(bool decode, int width, int height) {
  GraphContext g(kGraphNodes);
  ggml_tensor* out = nullptr;
  if (decode) {
    const VaeDecoder decoder = prepared(VaeDecoder::load(weight_lookup()), runtime().is_cpu(), vae_conv_input_scale());
    const int f = decoder.upscale();
    if (width <= 0 || height <= 0 || width % f != 0 || height % f != 0 || width > kMaxSide || height > kMaxSide) {
      fail(ErrorCode::InvalidArgument, "image sides must be positive multiples of " + std::to_string(f) +
                                           " up to 65536, not " + std::to_string(width) + "x" + std::to_string(height));
    }
    ggml_tensor* z = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, width / f, height / f, decoder.latent_channels(), 1);
    out = decoder.build(g.ctx, z);
  } else {
    const VaeEncoder encoder = prepared(VaeEncoder::load(weight_lookup()), runtime().is_cpu(), vae_conv_input_scale());
    check_encoder(encoder);
    check_encode_sides(encoder, width, height);
    ggml_tensor* x = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, width, height, 3, 1);
    out = encoder.build(g.ctx, x);
  }
  return planned_compute_bytes(runtime(), g, out);
}

Latent latent_from_moments(const Latent& moments, Rng* rng, float scale) {
  if (!std::isfinite(scale) || scale <= 0) fail(ErrorCode::InvalidArgument, "the scale factor must be a positive finite number");
  if (moments.channels < 2 || moments.channels % 2 != 0) {
    fail(ErrorCode::InvalidArgument, "moments need a mean and a log-variance half, not " + std::to_string(moments.channels) +
                                         " channels");
  }
  const size_t n = size_t(moments.channels / 2) * size_t(moments.width) * size_t(moments.height);
  if (moments.data.size() != 2 * n) fail(ErrorCode::InvalidArgument, "moments data does not match its sides");
  Latent z;
  z.channels = moments.channels / 2;
  z.width = moments.width;
  z.height = moments.height;
  z.data.assign(moments.data.begin(), moments.data.begin() + n);
  if (rng) {
    std::vector<float> noise(n);
    rng->randn(noise.data(), n);
    for (size_t i = 0; i < n; ++i) {
      const float logvar = std::clamp(moments.data[n + i], -30.0f, 20.0f);
      z.data[i] += std::exp(0.5f * logvar) * noise[i];
    }
  }
  for (float& v : z.data) v *= scale;
  return z;
}

}  // namespace sdn
