#include "pipeline/autoencoder.h"

#include <algorithm>
#include <cmath>

#include "ggml-backend.h"
#include "ggml.h"
#include "io/torch_checkpoint.h"
#include "nn/tae.h"
#include "pipeline/graph.h"

namespace sdn {

namespace {

constexpr int kProgressSteps = 16;
constexpr size_t kGraphNodes = 4096;

}  // namespace

struct TinyAutoencoder::Part {
  TensorStore store;
  std::unique_ptr<Weights> weights;
  TaeNetwork net;
};

TinyAutoencoder::TinyAutoencoder(const AutoencoderOptions& options) {
  if (options.encoder_path.empty() && options.decoder_path.empty()) {
    fail(ErrorCode::InvalidArgument, "an encoder or a decoder file is required");
  }
  auto load = [&](const std::string& path, TaeNetwork::Role role) {
    auto part = std::make_unique<Part>();
    part->store = read_torch_checkpoint(path);
    ggml_type type = options.f16_weights ? GGML_TYPE_F16 : GGML_TYPE_F32;
    part->weights = std::make_unique<Weights>(part->store, type, part->store.size());
    try {
      part->net = TaeNetwork::load(*part->weights, part->store, role);
    } catch (const Error& e) {
      fail(e.code(), path + ": " + e.what());
    }
    return part;
  };
  if (!options.encoder_path.empty()) encoder_ = load(options.encoder_path, TaeNetwork::Encoder);
  if (!options.decoder_path.empty()) decoder_ = load(options.decoder_path, TaeNetwork::Decoder);
  if (encoder_ && decoder_) {
    expect_dim("latent channels of the decoder (the encoder makes " + std::to_string(encoder_->net.out_channels()) + ")",
               decoder_->net.in_channels(), encoder_->net.out_channels());
    expect_dim("scale of the decoder", decoder_->net.scale(), encoder_->net.scale());
  }

  runtime_ = std::make_unique<Runtime>(options.device, options.threads);
  info_.device = options.device;
  for (Part* p : {encoder_.get(), decoder_.get()}) {
    if (!p) continue;
    p->weights->upload(runtime_->weight_buffer_type());
    info_.weight_bytes += p->weights->bytes();
  }
  info_.has_encoder = encoder_ != nullptr;
  info_.has_decoder = decoder_ != nullptr;
  info_.latent_channels = static_cast<int>(encoder_ ? encoder_->net.out_channels() : decoder_->net.in_channels());
  info_.scale = encoder_ ? encoder_->net.scale() : decoder_->net.scale();
}

TinyAutoencoder::~TinyAutoencoder() {
  // Weights live in buffers of the runtime's backend: free them first.
  encoder_.reset();
  decoder_.reset();
  runtime_.reset();
}

namespace {

// Activations are at most kMaxIntermediateElements floats (a 16k-pixel side at 64 channels
// would exceed it).
void check_size(double elements, const char* what) {
  check_intermediate_size(elements, std::string(what) + " is too large to process at once");
}

}  // namespace

// One forward pass of `net` on a planar f32 input [c][h][w]; the output comes back the same way.
Latent TinyAutoencoder::run(const TaeNetwork& net, const Latent& input, const JobControl& job) {
  return run_planar(
      *runtime_, input, "tae.input", [&net](ggml_context* ctx, ggml_tensor* x) { return net.build(ctx, x); }, kGraphNodes,
      kProgressSteps, job);
}

Latent TinyAutoencoder::encode(const Image& image, const JobControl& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!encoder_) fail(ErrorCode::InvalidArgument, "this autoencoder was loaded without an encoder");
  const int s = info_.scale;
  if (image.width <= 0 || image.height <= 0 || image.width % s || image.height % s) {
    fail(ErrorCode::InvalidArgument, "image sides must be positive multiples of " + std::to_string(s));
  }
  if (image.channels != 3 && image.channels != 4) fail(ErrorCode::InvalidArgument, "image must have 3 or 4 channels");
  const size_t plane = size_t(image.width) * image.height;
  if (image.data.size() != plane * image.channels) fail(ErrorCode::InvalidArgument, "image data has the wrong length");
  check_size(double(plane) * 64 * 9, "the image");

  // Pixels in [0, 1], what the encoder was trained on.
  const Latent rgb = pixels_to_planar(image, 0.0f, 1.0f);
  return run(encoder_->net, rgb, job);
}

Image TinyAutoencoder::decode(const Latent& latent, const JobControl& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!decoder_) fail(ErrorCode::InvalidArgument, "this autoencoder was loaded without a decoder");
  if (latent.channels != decoder_->net.in_channels()) {
    fail(ErrorCode::InvalidArgument, "latent has " + std::to_string(latent.channels) + " channels, the decoder takes " +
                                         std::to_string(decoder_->net.in_channels()));
  }
  if (latent.width <= 0 || latent.height <= 0) fail(ErrorCode::InvalidArgument, "latent sides must be positive");
  const size_t cells = size_t(latent.width) * latent.height;
  if (latent.data.size() != cells * latent.channels) fail(ErrorCode::InvalidArgument, "latent data has the wrong length");
  const int s = info_.scale;
  check_size(double(cells) * s * s * 64 * 9, "the latent");

  Latent rgb = run(decoder_->net, latent, job);

  // Planar RGB about [0, 1] -> 8-bit.
  return planar_to_pixels(rgb, 0.0f, 1.0f);
}

}  // namespace sdn
