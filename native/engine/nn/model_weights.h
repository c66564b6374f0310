// Every weight of a model on one device, in the type nn/weight_types.h gives it. On the CPU a
// tensor whose file bytes already are its type is used in place, straight from the memory map:
// loading then costs no copy, and the pages count once. Other tensors are converted slice by
// slice into one device buffer while the map pages they came from are dropped again, so peak
// memory stays close to the weights in their target type, not file + weights.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/job_control.h"
#include "ggml.h"
#include "io/tensor_store.h"
#include "nn/weight_lookup.h"
#include "nn/weight_types.h"

struct ggml_backend_buffer;
struct ggml_backend_buffer_type;

namespace sdn {

struct WeightRecord {
  std::string name;
  std::vector<int64_t> shape;  // outermost first, as the file has it
  std::string from;            // type in the file: "F16", "BF16", "Q8_0"
  std::string to;              // type on the device
  size_t bytes = 0;            // on the device (or mapped)
  bool mapped = false;         // used in place from the file's memory map
  bool unfolded = false;       // a conv kernel held as its [IC·KH·KW, OC] matrix (weight_types.h)
};

class ModelWeights : public WeightLookup {
 public:
  // `weight_type` null keeps the stored types. `allow_mapping`: the device reads host memory
  // (the CPU). One progress step per tensor; cancellation between tensors (and slices).
  // Throws ModelCompatibility (a shape or dtype the engine cannot hold), Resource, Aborted.
  ModelWeights(const TensorStore& store, const WeightType* weight_type, ggml_backend_buffer_type* buft,
               bool allow_mapping, const JobControl& job);
  ~ModelWeights() override;
  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;

  // The weight named `name` (internal naming), or null.
  ggml_tensor* find(const std::string& name) const;
  bool has(const std::string& name) const override { return find(name) != nullptr; }
  // Rank is that of the file's shape (ggml drops trailing 1s).
  ggml_tensor* require(const std::string& name, int rank) override;
  // The loader's type rules keep 1-D and scalar weights f32; other ranks are refused here.
  ggml_tensor* require_f32(const std::string& name, int rank) override;
  // The file shape of `name` (outermost first); throws ModelCompatibility when missing.
  const std::vector<int64_t>& shape(const std::string& name) const;
  std::vector<int64_t> unfolded_kernel_shape(const std::string& name) const override;
  const std::vector<WeightRecord>& records() const { return records_; }
  size_t device_bytes() const;  // in device buffers
  size_t mapped_bytes() const;  // used in place from memory maps
  // tensor_checksum of the weight as it is on the device (read back; quantized ones decoded).
  uint64_t checksum(const std::string& name) const;
  // `t` (a weight, or a tensor of the same types beside them) read back as f32 values.
  static std::vector<float> read_f32(const ggml_tensor* t);
  // Unique in the process (never reused, unlike an address): what a LoRA matched to these
  // weights remembers them by.
  uint64_t id() const { return id_; }
  // Drops the resident pages of a weight used in place from a memory map (they reload from the
  // file when next read); nothing for other weights. For weights a LoRA set has replaced with
  // patched copies: base and copy would otherwise both stay in memory.
  void release_pages(const std::string& name) const;
  // For every mapped weight whose name starts with `prefix` (a network's place): its pages
  // mapped into the process in bulk, for a stage about to run the network (one call instead of
  // a fault per page), and dropped again once the stage is done with it, so that each stage's
  // peak holds its own network's pages, not every network's.
  void populate_pages_under(const std::string& prefix) const;
  void release_pages_under(const std::string& prefix) const;

 private:
  void advise_pages_under(const std::string& prefix, bool populate) const;
  // The record of `name`; throws ModelCompatibility when missing.
  const WeightRecord& record(const std::string& name) const;

  uint64_t id_;
  ggml_context* ctx_ = nullptr;
  std::vector<ggml_backend_buffer*> buffers_;
  std::unordered_map<std::string, ggml_tensor*> by_name_;
  std::unordered_map<std::string, size_t> record_of_;
  std::unordered_map<std::string, const ByteSource*> map_of_;  // mapped weights: the map they are read from
  std::vector<WeightRecord> records_;
};

}  // namespace sdn
