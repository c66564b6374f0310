// A loaded Stable Diffusion model: its files opened under the internal naming, every weight on
// one device in its chosen type. The networks (text encoder, UNet, VAE) take their weights
// from here by internal name.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/job_control.h"
#include "io/model_sources.h"
#include "lora/adapter_set.h"
#include "nn/model_weights.h"
#include "pipeline/backend.h"
#include "pipeline/image.h"

namespace sdn {

struct ModelOptions {
  ModelSources sources;
  std::string device = "cpu";
  int threads = 1;
  std::string weight_type;  // "" keeps the stored types; else a weight_type_names() entry
};

// What shapes cannot tell about a text encoder; lib/ decides from the family and metadata.
struct TextEncoderParams {
  std::string prefix = "cond_stage_model.transformer.text_model.";  // internal names of the tower
  int heads = 0;            // 0: width / 64, as every CLIP text tower SD uses
  bool quick_gelu = true;   // CLIP ViT-L (SD1.x): quick-GELU; OpenCLIP (SD2.x, SDXL's bigG): GELU
  int clip_skip = 1;        // 1: last layer; 2: penultimate layer, then the final norm (as the webui)
  bool final_norm = true;   // false: the layer's output as it is (SDXL's encoders, sgm's "hidden"/"penultimate")
  bool pooled = false;      // also the pooled vector (SDXL's bigG: what the UNet's y starts with)
  // Textual-inversion vectors, [rows][width] flat: token id vocab + r takes row r in place of a
  // token embedding (lib/embeddings.ts numbers them).
  std::vector<float> embeddings;
};

// A text encoder's outputs for `windows` windows of tokens.
struct TextEncoding {
  std::vector<float> hidden;  // [windows][positions][width]
  std::vector<float> pooled;  // [windows][proj] when asked for, else empty
};

// What shapes cannot tell about the UNet: exactly one of the two is set (SD1.x: 8 heads;
// SD2.x/SDXL: 64-wide heads).
struct UnetParams {
  int heads = 0;
  int head_dim = 0;
};

// The VAE run in overlapping tiles blended without seams, so its compute buffer stays that of
// one tile (pipeline/vae_tiling.h). Sizes in latent cells; the encoder's tiles are as many
// pixels as those cells cover.
struct VaeTiling {
  bool enabled = false;
  int tile = 64;     // 512 pixels
  int overlap = 16;  // at most tile / 2
};

class Rng;

struct ModelInfo {
  std::string device;
  std::string weight_type;  // as asked ("" = as stored)
  std::vector<SourceRecord> sources;
  std::string tokenizer_dir;
  size_t device_bytes = 0;
  size_t mapped_bytes = 0;
  double load_ms = 0;
};

class Model {
 public:
  // One progress step per tensor placed. Throws FileAccess, ModelFormat, ModelCompatibility,
  // InvalidArgument (device, weight type), Resource, Backend, Aborted.
  Model(const ModelOptions& options, const JobControl& job);
  ~Model();

  const ModelInfo& info() const { return info_; }
  const ModelWeights& weights() const { return *weights_; }
  const TensorStore& store() const { return opened_.store; }
  // Conv2d::input_scale of every VAE convolution (lib/ sets 1/32 for SDXL's own VAE); 1: none.
  // Set before any job runs.
  void set_vae_conv_input_scale(float scale) { vae_conv_input_scale_ = scale; }
  float vae_conv_input_scale() const { return vae_conv_input_scale_; }
  // The files' metadata, moved out: the engine reads none of it after loading, and a hostile
  // file's 200k entries should not be freed wherever the model ends (the JS thread).
  std::map<std::string, std::string> take_metadata() { return opened_.store.take_metadata(); }
  Runtime& runtime() { return *runtime_; }
  // The weights as the networks take them: the base weights, patched by the LoRAs in use.
  AdaptedWeights& weight_lookup() { return *lookup_; }
  // Applies `uses` to the weights for the jobs that follow (the caller holds compute_mutex()):
  // the set last built is kept and reused while the same LoRAs at the same weights come
  // again; another set replaces it (the old one freed first). An empty list uses the base
  // weights and keeps the set for later. Throws Resource, Backend, Aborted, InvalidArgument
  // (a LoRA loaded for another model).
  void use_loras(const std::vector<LoraUse>& uses, const JobControl& job);
  // The weight `name` as the networks take it with `uses` applied, as f32 values in PyTorch
  // layout; run-time updates (quantized weights) added on the host (for tests: the patched
  // weights against a reference). The caller holds compute_mutex().
  std::vector<float> patched_weight(const std::vector<LoraUse>& uses, const std::string& name, const JobControl& job);
  // Device bytes the kept LoRA set holds, and whether the last use_loras() reused it.
  size_t lora_set_bytes() const { return lora_set_ ? lora_set_->bytes() : 0; }
  bool lora_set_reused() const { return lora_set_reused_; }
  // One computation at a time: the runtime's compute buffers are shared.
  std::mutex& compute_mutex() { return mutex_; }

  // The networks, one evaluation each (callers hold compute_mutex()). Planar float layouts,
  // outermost first, as PyTorch's.
  // Text encoder: `windows` × positions token ids -> hidden states [windows][positions][width]
  // (and the pooled vectors, params.pooled: each window's EOS token is its largest id, as CLIP's
  // own pooling takes the argmax).
  TextEncoding encode_tokens(const std::vector<int32_t>& ids, int windows, const TextEncoderParams& params,
                             const JobControl& job);
  // UNet: x [batch][C][H][W], timesteps [batch], context [batch][tokens][width], y [batch][adm]
  // (SDXL's vector; empty for UNets without one) -> its output, [batch][out C][H][W] (noise or v,
  // as the model was trained).
  std::vector<float> run_unet(const std::vector<float>& x, int batch, int channels, int height, int width,
                              const std::vector<float>& timesteps, const std::vector<float>& context,
                              int context_tokens, const std::vector<float>& y, const UnetParams& params,
                              const JobControl& job);
  // VAE decoder: a latent as the sampler leaves it, divided by `scale_factor` (0.18215 for
  // SD1.x/2.x) inside, -> 8-bit RGB. Tiled: one progress step per tile and stage (vae_tiling.h).
  Image decode_latent(const Latent& latent, float scale_factor, const VaeTiling& tiling, const JobControl& job);
  // Throws Resource when decode_latent would refuse a latent of these sides as too large (a
  // job checks this before it spends minutes sampling).
  void check_decode_size(int latent_width, int latent_height, const VaeTiling& tiling);
  // VAE encoder: an RGB(A) image (alpha ignored) -> the posterior's mean and log-variance,
  // channels [mean..., logvar...], unscaled. Tiled: one progress step per tile and stage.
  Latent encode_image_moments(const Image& image, const VaeTiling& tiling, const JobControl& job);
  // Compute-buffer bytes one untiled decode (or encode) of a width × height pixel image needs
  // on this model's device, as ggml's allocator would plan them (nothing is allocated).
  // Throws ModelCompatibility when that half of the VAE is missing, InvalidArgument for sides
  // that are not positive multiples of the VAE's scale or pass 65536.
  double vae_compute_bytes(bool decode, int width, int height);

 private:
  OpenedModel opened_;  // owns the memory maps that mapped weights point into
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<AdaptedWeights> lookup_;
  std::unique_ptr<AdapterSet> lora_set_;  // the last LoRA set built, kept for the next job that wants it
  bool lora_set_reused_ = false;
  ModelInfo info_;
  std::mutex mutex_;
  float vae_conv_input_scale_ = 1.0f;
};

// Moments [mean..., logvar...] (as encode_image_moments returns them) -> a latent of the mean's
// channels: mean + exp(logvar / 2) · noise (one rng->randn over the mean's size), or the mean
// when `rng` is null; logvar clamped to [-30, 20] as LDM's DiagonalGaussianDistribution; times
// `scale`.
Latent latent_from_moments(const Latent& moments, Rng* rng, float scale);

}  // namespace sdn
