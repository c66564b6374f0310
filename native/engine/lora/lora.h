// A LoRA file matched to one loaded model: each module the file adapts, the model weight it
// patches and how (the kind and its parts), checked for shape, rank and finite values once,
// when it is loaded; plus what did not fit, for the user to see. Applying LoRAs to a model for
// a job is lora/adapter_set.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/job_control.h"
#include "io/model_file.h"
#include "lora/lora_file.h"

namespace sdn {

class ModelWeights;

enum class LoraKind {
  LowRank,  // up · down (kohya LoRA / LoCon, PEFT), Tucker with a mid
  LoHa,     // (w1a · w1b) ⊙ (w2a · w2b), Tucker with t1 / t2
  LoKr,     // kron(w1, w2), each full or a · b
  Diff,     // a full ΔW (or Δbias)
};

struct LoraTarget {
  std::string weight;               // internal name of the model tensor it patches
  std::vector<int64_t> shape;       // that tensor's shape (outermost first)
  LoraKind kind = LoraKind::LowRank;
  std::map<LoraPart, const TensorInfo*> parts;
  float scale = 1.0f;               // alpha / rank, `.scale`, or 1
  int rank = 0;                     // 0 where the kind has none (Diff)
  // DoRA: the magnitude per output row (axis 0) or per input column (axis 1), or none.
  const TensorInfo* dora = nullptr;
  int dora_axis = 0;
};

struct LoraReport {
  size_t tensors = 0;                     // in the file
  size_t applied_tensors = 0;             // of them, in a target
  std::vector<std::string> unmatched;     // tensor names whose module is no weight of the model
  std::vector<std::string> incompatible;  // "<module>: <why>, shapes …" — matched a weight but do not fit it
};

class Lora {
 public:
  // Opens `path` (safetensors, GGUF, .pt/.ckpt through the non-executing pickle reader) and
  // matches it to `weights`. Throws FileAccess, ModelFormat (malformed file, no LoRA tensors,
  // a rank of 0 or past the weight's own sizes, non-finite values, a part twice), Aborted.
  Lora(const std::string& path, const ModelWeights& weights, const JobControl& job);

  uint64_t id() const { return id_; }  // unique in the process: identifies the LoRA in caches
  const std::string& path() const { return path_; }
  const std::vector<LoraTarget>& targets() const { return targets_; }
  const LoraReport& report() const { return report_; }
  size_t file_bytes() const { return file_.file_size; }
  // Matched to these weights (a LoRA is matched to one model's names and shapes).
  bool made_for(const ModelWeights& weights) const;

 private:
  uint64_t id_;
  uint64_t owner_;  // ModelWeights::id()
  std::string path_;
  ModelFile file_;  // owns the map the parts point into
  std::vector<LoraTarget> targets_;
  LoraReport report_;
};

}  // namespace sdn
