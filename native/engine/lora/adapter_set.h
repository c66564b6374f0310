// A set of LoRAs applied to a model's weights for the jobs that ask for it. Each touched
// weight is either
//  - merged: a private copy in the weight's own type holding W + Σ weight·scale·ΔW (float
//    weights; and quantized ones whose update is not a plain low-rank pair — LoHa, LoKr, DoRA,
//    Tucker, full diffs — re-quantized), computed on the model's device, or
//  - applied at run time: a quantized weight with plain low-rank updates keeps its bytes, and
//    its linear layer adds scale · up·(down·x) (rounding the update into the quantized weight
//    would lose most of it).
// Untouched weights are never copied and the file's map stays read-only: dropping the set
// gives back exactly the base weights. A merged weight's base pages in the map are dropped from
// memory once its copy is made (they reload from the file when read again), so a set costs the
// memory of its copies, not copies + bases.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/job_control.h"
#include "lora/lora.h"
#include "nn/model_weights.h"
#include "nn/weight_lookup.h"

struct ggml_backend_buffer;

namespace sdn {

class Runtime;

struct LoraUse {
  std::shared_ptr<const Lora> lora;
  float weight = 1.0f;
};

// What identifies a set: each LoRA's id and weight, in order.
using LoraSetKey = std::vector<std::pair<uint64_t, float>>;
LoraSetKey lora_set_key(const std::vector<LoraUse>& uses);

class AdapterSet {
 public:
  // Throws Resource (no memory for the copies), Backend, Aborted. `recycled`: the buffer of the
  // set this one replaces (taken over: reused when large enough, else freed), so that switching
  // between sets writes into memory already mapped rather than faulting in fresh pages.
  AdapterSet(const ModelWeights& weights, Runtime& runtime, const std::vector<LoraUse>& uses, const JobControl& job,
             ggml_backend_buffer* recycled = nullptr);
  ~AdapterSet();
  AdapterSet(const AdapterSet&) = delete;
  AdapterSet& operator=(const AdapterSet&) = delete;

  const LoraSetKey& key() const { return key_; }
  ggml_tensor* replacement(const std::string& name) const;
  const std::vector<LowRankAdapter>* adapters(const std::string& name) const;
  size_t merged_count() const { return merged_.size(); }
  size_t runtime_count() const { return runtime_.size(); }
  size_t bytes() const;  // device memory the set holds
  // Gives up the set's buffer for the next set (the set's tensors are unusable afterwards).
  ggml_backend_buffer* release_buffer();

 private:
  void build(const ModelWeights& weights, Runtime& runtime, const std::vector<LoraUse>& uses, const JobControl& job,
             ggml_backend_buffer* recycled);

  LoraSetKey key_;
  ggml_context* ctx_ = nullptr;
  ggml_backend_buffer* buffer_ = nullptr;
  std::unordered_map<std::string, ggml_tensor*> merged_;
  std::unordered_map<std::string, std::vector<LowRankAdapter>> runtime_;
};

// The model's weights as the networks see them: the base weights, with an AdapterSet's copies
// and run-time updates while one is in use.
class AdaptedWeights : public WeightLookup {
 public:
  explicit AdaptedWeights(ModelWeights& base) : base_(base) {}
  void use(const AdapterSet* set) {
    set_ = set;
    unconsumed_.clear();
  }
  bool has(const std::string& name) const override { return base_.has(name); }
  ggml_tensor* require(const std::string& name, int rank) override;
  ggml_tensor* require_f32(const std::string& name, int rank) override;
  const std::vector<LowRankAdapter>* adapters(const std::string& name) override;
  // A replacement keeps its base weight's shape and layout.
  std::vector<int64_t> unfolded_kernel_shape(const std::string& name) const override {
    return base_.unfolded_kernel_shape(name);
  }
  // Internal unless every weight with run-time updates that a network took also had its
  // updates taken (a consumer other than a linear layer would drop them silently).
  void check_adapters_consumed() const;

 private:
  ModelWeights& base_;
  const AdapterSet* set_ = nullptr;
  std::unordered_set<std::string> unconsumed_;
};

}  // namespace sdn
