#include "pipeline/model.h"

#include <chrono>

#include "core/error.h"
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
  lookup_ = std::make_unique<AdaptedWeights>(*weights_);

  info_.device = options.device;
  info_.weight_type = options.weight_type;
  info_.sources = opened_.sources;
  info_.tokenizer_dir = opened_.tokenizer_dir;
  info_.device_bytes = weights_->device_bytes();
  info_.mapped_bytes = weights_->mapped_bytes();
  info_.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

Model::~Model() = default;

void Model::use_loras(const std::vector<LoraUse>& uses, const JobControl& job) {
  lora_set_reused_ = false;
  if (uses.empty()) {
    lookup_->use(nullptr);
    return;
  }
  if (lora_set_ && lora_set_->key() == lora_set_key(uses)) {
    lora_set_reused_ = true;
  } else {
    lookup_->use(nullptr);
    // The old set goes first (two at once would double the peak); its buffer passes to the new
    // one, whose copies then land in memory already mapped.
    ggml_backend_buffer* recycled = lora_set_ ? lora_set_->release_buffer() : nullptr;
    lora_set_.reset();
    lora_set_ = std::make_unique<AdapterSet>(*weights_, *runtime_, uses, job, recycled);
  }
  lookup_->use(lora_set_.get());
}

}  // namespace sdn

namespace sdn {

std::vector<float> Model::patched_weight(const std::vector<LoraUse>& uses, const std::string& name, const JobControl& job) {
  struct BaseOnExit {
    Model& model;
    ~BaseOnExit() { model.use_loras({}, JobControl()); }
  } base_on_exit{*this};
  use_loras(uses, job);
  if (!weights_->has(name)) fail(ErrorCode::InvalidArgument, "no weight named '" + name + "'");
  const int rank = static_cast<int>(weights_->shape(name).size());
  ggml_tensor* t = rank == 1 ? lookup_->require_f32(name, 1) : lookup_->require(name, rank);
  std::vector<float> values = ModelWeights::read_f32(t);
  if (const std::vector<LowRankAdapter>* adapters = lookup_->adapters(name)) {
    const int64_t in = t->ne[0], out = ggml_nelements(t) / in;
    for (const LowRankAdapter& a : *adapters) {
      const std::vector<float> down = ModelWeights::read_f32(a.down), up = ModelWeights::read_f32(a.up);  // [IN, R], [R, OUT]
      const int64_t r = a.down->ne[1];
      for (int64_t o = 0; o < out; ++o)
        for (int64_t k = 0; k < r; ++k) {
          const float u = a.scale * up[size_t(o * r + k)];
          for (int64_t i = 0; i < in; ++i) values[size_t(o * in + i)] += u * down[size_t(k * in + i)];
        }
    }
  }
  return values;
}

}  // namespace sdn
