#include "pipeline/autoencoder.h"

#include <algorithm>
#include <cmath>

#include "ggml-backend.h"
#include "ggml.h"
#include "io/torch_checkpoint.h"
#include "nn/tae.h"
#include "pipeline/graph.h"
#include "pipeline/vae_tiling.h"

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

// One forward pass of `net` on a planar f32 input [c][h][w], whole or in tiles; the output
// comes back the same way. `in_per_cell` / `out_per_cell`: input and output values per latent
// cell along each side (the encoder reads scale × scale pixels per cell, the decoder writes them).
Latent TinyAutoencoder::run(const TaeNetwork& net, const Latent& input, const VaeTiling& tiling, int in_per_cell,
                            int out_per_cell, const char* input_name, const JobControl& job) {
  const GraphBuild build = [&net](ggml_context* ctx, ggml_tensor* x) { return net.build(ctx, x); };
  if (!tiling.enabled) return run_planar(*runtime_, input, input_name, build, kGraphNodes, kProgressSteps, job);
  check_tiled_size(input.width / in_per_cell, input.height / in_per_cell, tiling, in_per_cell, input.channels, build,
                   input_name, kGraphNodes);
  return run_tiled(*runtime_, input, tiling, in_per_cell, out_per_cell, build, input_name, kGraphNodes, job);
}

namespace {

// The side one pass sees, in latent cells: the whole input, or one tile (tiles are never larger).
double pass_cells(int cells, const VaeTiling& tiling) {
  return tiling.enabled ? std::min<double>(cells, tiling.tile) : cells;
}

}  // namespace

Latent TinyAutoencoder::encode(const Image& image, const JobControl& job, const VaeTiling& tiling) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!encoder_) fail(ErrorCode::InvalidArgument, "this autoencoder was loaded without an encoder");
  const int s = info_.scale;
  if (image.width <= 0 || image.height <= 0 || image.width % s || image.height % s) {
    fail(ErrorCode::InvalidArgument, "image sides must be positive multiples of " + std::to_string(s));
  }
  if (image.channels != 3 && image.channels != 4) fail(ErrorCode::InvalidArgument, "image must have 3 or 4 channels");
  const size_t plane = size_t(image.width) * image.height;
  if (image.data.size() != plane * image.channels) fail(ErrorCode::InvalidArgument, "image data has the wrong length");
  if (tiling.enabled) check_tiling(tiling);
  const double cells = pass_cells(image.width / s, tiling) * pass_cells(image.height / s, tiling);
  check_size(cells * s * s * 64 * 9, tiling.enabled ? "a tile of the image" : "the image");

  // Pixels in [0, 1], what the encoder was trained on.
  const Latent rgb = pixels_to_planar(image, 0.0f, 1.0f);
  return run(encoder_->net, rgb, tiling, s, 1, "tae.input", job);
}

Image TinyAutoencoder::decode(const Latent& latent, const JobControl& job, const VaeTiling& tiling) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!decoder_) fail(ErrorCode::InvalidArgument, "this autoencoder was loaded without a decoder");
  if (latent.channels != decoder_->net.in_channels()) {
    fail(ErrorCode::InvalidArgument, "latent has " + std::to_string(latent.channels) + " channels, the decoder takes " +
                                         std::to_string(decoder_->net.in_channels()));
  }
  if (latent.width <= 0 || latent.height <= 0) fail(ErrorCode::InvalidArgument, "latent sides must be positive");
  const size_t cells = size_t(latent.width) * latent.height;
  if (latent.data.size() != cells * latent.channels) fail(ErrorCode::InvalidArgument, "latent data has the wrong length");
  if (tiling.enabled) check_tiling(tiling);
  const int s = info_.scale;
  check_size(pass_cells(latent.width, tiling) * pass_cells(latent.height, tiling) * s * s * 64 * 9,
             tiling.enabled ? "a tile of the latent" : "the latent");

  Latent rgb = run(decoder_->net, latent, tiling, 1, s, "tae.input", job);

  // Planar RGB about [0, 1] -> 8-bit.
  return planar_to_pixels(rgb, 0.0f, 1.0f);
}

// No lock: it reads only what loading fixed, so the JS thread never waits for a running job.
double TinyAutoencoder::compute_bytes(bool decode, int width, int height) {
  Part* part = decode ? decoder_.get() : encoder_.get();
  if (!part) return 0;
  const int s = info_.scale;
  if (width <= 0 || height <= 0 || width % s || height % s || width > 65536 || height > 65536) {
    fail(ErrorCode::InvalidArgument, "image sides must be positive multiples of " + std::to_string(s) + " up to 65536");
  }
  GraphContext g(kGraphNodes);
  ggml_tensor* x = decode ? ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, width / s, height / s, part->net.in_channels(), 1)
                          : ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, width, height, 3, 1);
  return planned_compute_bytes(*runtime_, g, part->net.build(g.ctx, x));
}

}  // namespace sdn
