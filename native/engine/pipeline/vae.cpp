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

void check_size(double elements, const std::string& what) {
  check_intermediate_size(elements, what + " is too large to process at once");
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
      runtime(), z, "vae.latent", [&](ggml_context* ctx, ggml_tensor* x) { return decoder.build(ctx, x); }, kGraphNodes,
      kProgressSteps, job);
  if (rgb.channels != 3) {
    fail(ErrorCode::ModelCompatibility, "the VAE decoder makes " + std::to_string(rgb.channels) + " channels, not RGB");
  }

  // Planar RGB about [-1, 1] -> 8-bit, rounded as the TAE path does.
  return planar_to_pixels(rgb, -1.0f, 1.0f);
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

  // Pixels in [-1, 1], what the encoder was trained on.
  const Latent rgb = pixels_to_planar(image, -1.0f, 1.0f);
  return run_planar(
      runtime(), rgb, "vae.image", [&](ggml_context* ctx, ggml_tensor* x) { return encoder.build(ctx, x); }, kGraphNodes,
      kProgressSteps, job);
}

}  // namespace sdn
