// Model::decode_latent and Model::encode_image_moments: the loaded model's AutoencoderKL run
// once on one image or latent, with the conversions between 8-bit interleaved pixels and the
// planar [-1, 1] floats the VAE works in.
#include <algorithm>
#include <cmath>
#include <string>

#include "ggml-backend.h"
#include "ggml.h"
#include "nn/autoencoder_kl.h"
#include "pipeline/graph.h"
#include "pipeline/model.h"

namespace sdn {

namespace {

constexpr int kProgressSteps = 16;
constexpr size_t kGraphNodes = 8192;
// The largest intermediate (an im2col buffer or the mid attention's scores), in elements: past
// this (16 GB of f32) the job is refused before ggml is asked for a buffer it cannot give.
constexpr double kMaxIntermediateElements = 4.0e9;

void check_size(double elements, const std::string& what) {
  if (!(elements <= kMaxIntermediateElements)) fail(ErrorCode::Resource, what + " is too large to process at once");
}

// One forward pass of the graph `build` makes from a planar f32 input [c][h][w]; the output
// comes back the same way.
template <typename Build>
Latent run_planar(Runtime& runtime, const Latent& input, const char* input_name, Build build, const JobControl& job) {
  GraphContext g(kGraphNodes);
  ggml_tensor* in = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, input.width, input.height, input.channels, 1);
  ggml_set_name(in, input_name);
  ggml_set_input(in);
  ggml_tensor* out = build(g.ctx, in);
  ggml_set_output(out);
  ggml_build_forward_expand(g.graph, out);

  job.throw_if_cancelled();
  runtime.allocate(g.graph);
  Latent result;
  try {
    ggml_backend_tensor_set(in, input.data.data(), 0, input.data.size() * sizeof(float));
    runtime.compute(g.graph, job, kProgressSteps);
    result.width = static_cast<int>(out->ne[0]);
    result.height = static_cast<int>(out->ne[1]);
    result.channels = static_cast<int>(out->ne[2]);
    result.data.resize(ggml_nelements(out));
    ggml_backend_tensor_get(out, result.data.data(), 0, result.data.size() * sizeof(float));
  } catch (...) {
    runtime.reset();
    throw;
  }
  runtime.reset();
  return result;
}

}  // namespace

Image Model::decode_latent(const Latent& latent, float scale_factor, const JobControl& job) {
  const VaeDecoder decoder = VaeDecoder::load(weight_lookup());
  if (!std::isfinite(scale_factor) || scale_factor <= 0) {
    fail(ErrorCode::InvalidArgument, "the scale factor must be a positive finite number");
  }
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
  check_size(decoder.peak_elements(latent.width, latent.height), "the latent");
  const double f = decoder.upscale();
  if (double(latent.width) * f > 65536 || double(latent.height) * f > 65536) {
    fail(ErrorCode::InvalidArgument, "the decoded image would be larger than 65536 pixels on a side");
  }

  Latent z = latent;
  for (float& v : z.data) v /= scale_factor;
  Latent rgb = run_planar(
      runtime(), z, "vae.latent", [&](ggml_context* ctx, ggml_tensor* x) { return decoder.build(ctx, x); }, job);
  if (rgb.channels != 3) {
    fail(ErrorCode::ModelCompatibility, "the VAE decoder makes " + std::to_string(rgb.channels) + " channels, not RGB");
  }

  // Planar RGB about [-1, 1] -> interleaved 8-bit: (x + 1) / 2 clamped to [0, 1] (NaN -> 0),
  // rounded as the TAE path does.
  Image image;
  image.width = rgb.width;
  image.height = rgb.height;
  image.channels = 3;
  const size_t plane = size_t(image.width) * size_t(image.height);
  image.data.resize(plane * 3);
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      float v = (rgb.data[c * plane + i] + 1.0f) * 0.5f;
      v = std::isnan(v) ? 0.0f : std::min(1.0f, std::max(0.0f, v));
      image.data[i * 3 + c] = static_cast<uint8_t>(std::lround(v * 255.0f));
    }
  }
  return image;
}

Latent Model::encode_image_moments(const Image& image, const JobControl& job) {
  const VaeEncoder encoder = VaeEncoder::load(weight_lookup());
  if (encoder.image_channels() != 3) {
    fail(ErrorCode::ModelCompatibility, "the VAE encoder takes " + std::to_string(encoder.image_channels()) +
                                            " image channels, not RGB");
  }
  const int f = encoder.downscale();
  if (image.width <= 0 || image.height <= 0 || image.width % f != 0 || image.height % f != 0) {
    fail(ErrorCode::InvalidArgument, "image sides must be positive multiples of " + std::to_string(f) + ", not " +
                                         std::to_string(image.width) + "x" + std::to_string(image.height));
  }
  if (image.channels != 3 && image.channels != 4) fail(ErrorCode::InvalidArgument, "image must have 3 or 4 channels");
  const size_t plane = size_t(image.width) * size_t(image.height);
  if (image.data.size() != plane * size_t(image.channels)) {
    fail(ErrorCode::InvalidArgument, "image data has " + std::to_string(image.data.size()) + " bytes, width*height*channels is " +
                                         std::to_string(plane * size_t(image.channels)));
  }
  check_size(encoder.peak_elements(image.width, image.height), "the image");

  // Interleaved 8-bit RGB(A) -> planar RGB in [-1, 1], what the encoder was trained on.
  Latent rgb;
  rgb.width = image.width;
  rgb.height = image.height;
  rgb.channels = 3;
  rgb.data.resize(plane * 3);
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) rgb.data[c * plane + i] = image.data[i * image.channels + c] / 127.5f - 1.0f;
  }
  return run_planar(
      runtime(), rgb, "vae.image", [&](ggml_context* ctx, ggml_tensor* x) { return encoder.build(ctx, x); }, job);
}

}  // namespace sdn
