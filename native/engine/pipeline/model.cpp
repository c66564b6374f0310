#include "pipeline/model.h"

#include <chrono>

#include "ggml-backend.h"

namespace sdn {

Model::Model(const ModelOptions& options, const JobControl& job) {
  const auto start = std::chrono::steady_clock::now();
  // Checked before any file is touched: a typo should not cost a multi-GB read.
  const WeightType* weight_type = options.weight_type.empty() ? nullptr : &find_weight_type(options.weight_type);
  runtime_ = std::make_unique<Runtime>(options.device, options.threads);
  job.throw_if_cancelled();
  opened_ = open_model(options.sources);
  job.throw_if_cancelled();

  ggml_backend_dev_t dev = ggml_backend_get_device(runtime_->backend());
  const bool cpu = ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU;
  weights_ = std::make_unique<ModelWeights>(opened_.store, weight_type, runtime_->weight_buffer_type(), cpu, job);

  info_.device = options.device;
  info_.weight_type = options.weight_type;
  info_.sources = opened_.sources;
  info_.tokenizer_dir = opened_.tokenizer_dir;
  info_.device_bytes = weights_->device_bytes();
  info_.mapped_bytes = weights_->mapped_bytes();
  info_.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

Model::~Model() = default;

}  // namespace sdn
