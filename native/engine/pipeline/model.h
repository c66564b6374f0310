// A loaded Stable Diffusion model: its files opened under the internal naming, every weight on
// one device in its chosen type. The networks (text encoder, UNet, VAE) take their weights
// from here by internal name.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/job_control.h"
#include "io/model_sources.h"
#include "nn/model_weights.h"
#include "pipeline/backend.h"

namespace sdn {

struct ModelOptions {
  ModelSources sources;
  std::string device = "cpu";
  int threads = 1;
  std::string weight_type;  // "" keeps the stored types; else a weight_type_names() entry
};

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
  // One computation at a time: the runtime's compute buffers are shared.
  std::mutex& compute_mutex() { return mutex_; }

 private:
  OpenedModel opened_;  // owns the memory maps that mapped weights point into
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<ModelWeights> weights_;
  ModelInfo info_;
  std::mutex mutex_;
};

}  // namespace sdn
