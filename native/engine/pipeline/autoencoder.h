// The tiny autoencoder as a job: load encoder and/or decoder, then encode images to latents
// and decode latents to images on one device.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "core/job_control.h"
#include "pipeline/backend.h"
#include "pipeline/image.h"
#include "pipeline/model.h"

namespace sdn {

class TaeNetwork;

struct AutoencoderOptions {
  std::string encoder_path;  // either may be empty, not both
  std::string decoder_path;
  std::string device = "cpu";
  int threads = 1;
  bool f16_weights = false;  // store conv weights as f16 (faster, slightly less exact)
};

struct AutoencoderInfo {
  bool has_encoder = false;
  bool has_decoder = false;
  int latent_channels = 0;
  int scale = 8;
  std::string device;
  size_t weight_bytes = 0;
};

class TinyAutoencoder {
 public:
  explicit TinyAutoencoder(const AutoencoderOptions& options);
  ~TinyAutoencoder();

  const AutoencoderInfo& info() const { return info_; }
  // RGB (or RGBA, alpha ignored) image whose sides are multiples of scale() -> latent, whole
  // or in tiles (as the VAE's: run_tiled, cut at the pool GroupNorms where the network has them).
  Latent encode(const Image& image, const JobControl& job, const VaeTiling& tiling = {});
  // Latent -> RGB image, clamped to [0,1] and rounded to 8 bits.
  Image decode(const Latent& latent, const JobControl& job, const VaeTiling& tiling = {});
  // Compute-buffer bytes of one untiled pass over a width × height pixel image (the allocator's
  // plan, nothing allocated); 0 where that half is missing. For lib/'s 'auto' tiling.
  double compute_bytes(bool decode, int width, int height);

 private:
  struct Part;
  Latent run(const TaeNetwork& net, const Latent& input, const VaeTiling& tiling, int in_per_cell, int out_per_cell,
             const char* input_name, const JobControl& job);

  std::mutex mutex_;  // one computation at a time: the runtime's buffers are shared
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<Part> encoder_;
  std::unique_ptr<Part> decoder_;
  AutoencoderInfo info_;
};

}  // namespace sdn
