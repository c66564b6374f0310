#include "nn/model_weights.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>

#include "core/error.h"
#include "ggml-backend.h"
#include "io/model_file.h"

namespace sdn {

namespace {

// ggml order (innermost first); a scalar as one element; a conv kernel held in `type`'s blocks
// as its [IC·KH·KW, OC] matrix (weight_types.h). Throws for what ggml cannot hold.
std::vector<int64_t> ggml_ne(const TensorInfo& t, ggml_type type) {
  if (t.shape.size() > GGML_MAX_DIMS)
    fail(ErrorCode::ModelCompatibility, "tensor '" + t.name + "' has " + std::to_string(t.shape.size()) +
                                            " dimensions; the engine holds at most " + std::to_string(GGML_MAX_DIMS));
  for (int64_t n : t.shape) {
    if (n < 1) fail(ErrorCode::ModelCompatibility, "tensor '" + t.name + "' has an empty dimension");
  }
  if (is_unfolded_kernel(t, type)) return {t.numel() / t.shape[0], t.shape[0]};
  std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
  if (ne.empty()) ne.push_back(1);
  return ne;
}

// What the CPU kernels read a type's elements (or block headers) as.
uintptr_t natural_alignment(ggml_type type) {
  switch (type) {
    case GGML_TYPE_I64: return 8;
    case GGML_TYPE_F32:
    case GGML_TYPE_I32: return 4;
    case GGML_TYPE_I8: return 1;
    default: return 2;  // f16, i16, and the block types (an f16 scale first)
  }
}

DType dtype_of(ggml_type type) {
  switch (type) {
    case GGML_TYPE_F32: return DType::F32;
    case GGML_TYPE_F16: return DType::F16;
    case GGML_TYPE_I64: return DType::I64;
    case GGML_TYPE_I32: return DType::I32;
    case GGML_TYPE_I16: return DType::I16;
    case GGML_TYPE_I8: return DType::I8;
    default: return DType::Ggml;
  }
}

struct Placed {
  ggml_tensor* tensor;
  const TensorInfo* info;
  const ByteSource* source;
};

}  // namespace

ModelWeights::ModelWeights(const TensorStore& store, const WeightType* weight_type, ggml_backend_buffer_type* buft,
                           bool allow_mapping, const JobControl& job) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id++;
  const auto& tensors = store.tensors();
  ggml_init_params params{};
  params.mem_size = ggml_tensor_overhead() * (tensors.size() + 1);
  params.no_alloc = true;
  ctx_ = ggml_init(params);
  if (!ctx_) fail(ErrorCode::Resource, "out of memory: cannot allocate the weight context");

  // 1. Decide each tensor's type and whether it can stay in the file's memory map.
  std::map<const ByteSource*, std::vector<Placed>> in_place;
  std::vector<Placed> converted;
  for (const TensorInfo& info : tensors) {
    ggml_type type = target_type(info, weight_type);
    // The networks add biases and scale norms in f32 (WeightLookup::require_f32): 1-D weights
    // become f32 whatever the file holds (stable-diffusion.cpp's converter quantizes norm
    // weights whose length the block size divides) or the weight type asks.
    const bool integer = type == GGML_TYPE_I64 || type == GGML_TYPE_I32 || type == GGML_TYPE_I16 || type == GGML_TYPE_I8;
    if (info.shape.size() <= 1 && !integer) type = GGML_TYPE_F32;
    const std::vector<int64_t> ne = ggml_ne(info, type);
    if (ne[0] % ggml_blck_size(type) != 0)
      fail(ErrorCode::ModelCompatibility, "tensor '" + info.name + "': rows of " + std::to_string(ne[0]) +
                                              " do not fill " + ggml_type_name(type) + " blocks");
    ggml_tensor* t = ggml_new_tensor(ctx_, type, static_cast<int>(ne.size()), ne.data());
    ggml_set_name(t, info.name.c_str());  // truncated past GGML_MAX_NAME: lookups go through by_name_
    by_name_.emplace(info.name, t);
    const ByteSource* source = store.source_of(info);
    const bool map = allow_mapping && source && source->mapped() && stored_as(info, type) &&
                     info.nbytes == ggml_nbytes(t) &&
                     reinterpret_cast<uintptr_t>(info.data) % natural_alignment(type) == 0;
    (map ? in_place[source] : converted).push_back({t, &info, source});
    if (map) map_of_.emplace(info.name, source);
    record_of_.emplace(info.name, records_.size());
    records_.push_back(
        {info.name, info.shape, tensor_type_name(info), type_name_upper(type), ggml_nbytes(t), map, is_unfolded_kernel(info, type)});
  }
  job.throw_if_cancelled();

  // 2. Mapped tensors: one buffer over each whole map (its base is page-aligned, as the CPU
  // buffer requires); each tensor points at its bytes in it.
  for (auto& [source, placed] : in_place) {
    ggml_backend_buffer_t buffer =
        ggml_backend_cpu_buffer_from_ptr(const_cast<uint8_t*>(source->data()), source->size());
    if (!buffer) fail(ErrorCode::Resource, "cannot wrap the model file's memory map");
    buffers_.push_back(buffer);
    ggml_backend_buffer_set_usage(buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    for (const Placed& p : placed) {
      if (ggml_backend_tensor_alloc(buffer, p.tensor, const_cast<uint8_t*>(p.info->data)) != GGML_STATUS_SUCCESS)
        fail(ErrorCode::Internal, "cannot place '" + p.info->name + "' in the memory map");
      source->prefetch(p.info->data, p.info->nbytes);
    }
  }

  // 3. The rest in device buffers (tensors already placed are skipped by the allocator).
  if (!converted.empty()) {
    ggml_backend_buffer_t buffer = ggml_backend_alloc_ctx_tensors_from_buft(ctx_, buft);
    if (!buffer) fail(ErrorCode::Resource, "not enough memory for the model's weights");
    buffers_.push_back(buffer);
    ggml_backend_buffer_set_usage(buffer, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  }
  const bool host = converted.empty() || ggml_backend_buft_is_host(buft);
  const int steps = static_cast<int>(tensors.size());
  int step = static_cast<int>(tensors.size() - converted.size());
  if (step > 0) job.report(step, steps);
  for (const Placed& p : converted) {
    job.throw_if_cancelled();
    size_t offset = 0;
    convert_tensor(
        *p.info, p.tensor->type,
        [&](const void* bytes, size_t n) {
          if (offset + n > ggml_nbytes(p.tensor)) fail(ErrorCode::Internal, "conversion of '" + p.info->name + "' overran");
          if (host) {
            std::memcpy(static_cast<uint8_t*>(p.tensor->data) + offset, bytes, n);
          } else {
            ggml_backend_tensor_set(p.tensor, bytes, offset, n);
          }
          offset += n;
        },
        job);
    if (offset != ggml_nbytes(p.tensor)) fail(ErrorCode::Internal, "conversion of '" + p.info->name + "' came out short");
    // The file's pages for this tensor are read: let them go, so the file and the converted
    // weights never both sit in memory.
    if (p.source && p.source->mapped()) p.source->release(p.info->data, p.info->nbytes);
    job.report(++step, steps);
  }
}

ModelWeights::~ModelWeights() {
  for (ggml_backend_buffer_t b : buffers_) ggml_backend_buffer_free(b);
  if (ctx_) ggml_free(ctx_);
}

ggml_tensor* ModelWeights::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const WeightRecord& ModelWeights::record(const std::string& name) const {
  auto it = record_of_.find(name);
  if (it == record_of_.end()) fail(ErrorCode::ModelCompatibility, "the model has no tensor '" + name + "'");
  return records_[it->second];
}

const std::vector<int64_t>& ModelWeights::shape(const std::string& name) const { return record(name).shape; }

std::vector<int64_t> ModelWeights::unfolded_kernel_shape(const std::string& name) const {
  const WeightRecord& r = record(name);
  return r.unfolded ? r.shape : std::vector<int64_t>{};
}

ggml_tensor* ModelWeights::require(const std::string& name, int rank) {
  const std::vector<int64_t>& s = shape(name);
  if (static_cast<int>(s.size()) != rank)
    fail(ErrorCode::ModelCompatibility, "tensor '" + name + "' has rank " + std::to_string(s.size()) + ", expected " +
                                            std::to_string(rank));
  return by_name_.at(name);
}

ggml_tensor* ModelWeights::require_f32(const std::string& name, int rank) {
  ggml_tensor* t = require(name, rank);
  if (t->type != GGML_TYPE_F32)
    fail(ErrorCode::ModelCompatibility, "tensor '" + name + "' is " + ggml_type_name(t->type) + " where f32 is needed");
  return t;
}

size_t ModelWeights::device_bytes() const {
  size_t n = 0;
  for (const WeightRecord& r : records_) n += r.mapped ? 0 : r.bytes;
  return n;
}

void ModelWeights::release_pages(const std::string& name) const {
  auto it = map_of_.find(name);
  if (it == map_of_.end()) return;
  const ggml_tensor* t = find(name);
  it->second->release(static_cast<const uint8_t*>(t->data), ggml_nbytes(t));
}

void ModelWeights::advise_pages_under(const std::string& prefix, bool populate) const {
  // The network's tensors as byte ranges per map, merged where they touch or nearly (padding,
  // or a small tensor of another network between: its page going too only costs it a fault),
  // so that pages two of its tensors share are advised as well, and in few calls.
  std::map<const ByteSource*, std::vector<std::pair<const uint8_t*, const uint8_t*>>> ranges;
  for (const auto& [name, source] : map_of_) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const ggml_tensor* t = find(name);
    const uint8_t* begin = static_cast<const uint8_t*>(t->data);
    ranges[source].emplace_back(begin, begin + ggml_nbytes(t));
  }
  constexpr size_t kMergeGap = 4096;
  for (auto& [source, list] : ranges) {
    std::sort(list.begin(), list.end());
    const uint8_t* begin = list.front().first;
    const uint8_t* end = list.front().second;
    for (size_t i = 1; i <= list.size(); ++i) {
      if (i < list.size() && list[i].first <= end + kMergeGap) {
        end = std::max(end, list[i].second);
        continue;
      }
      if (populate) source->populate(begin, size_t(end - begin));
      else source->release(begin, size_t(end - begin));
      if (i < list.size()) begin = list[i].first, end = list[i].second;
    }
  }
}

void ModelWeights::populate_pages_under(const std::string& prefix) const { advise_pages_under(prefix, true); }

void ModelWeights::release_pages_under(const std::string& prefix) const { advise_pages_under(prefix, false); }

size_t ModelWeights::mapped_bytes() const {
  size_t n = 0;
  for (const WeightRecord& r : records_) n += r.mapped ? r.bytes : 0;
  return n;
}

std::vector<float> ModelWeights::read_f32(const ggml_tensor* t) {
  std::vector<uint8_t> bytes(ggml_nbytes(t));
  ggml_backend_tensor_get(t, bytes.data(), 0, bytes.size());
  TensorInfo info;
  info.name = ggml_get_name(t);
  info.dtype = dtype_of(t->type);
  info.ggml_type = t->type;
  for (int i = GGML_MAX_DIMS - 1; i >= 0; --i) info.shape.push_back(t->ne[i]);
  info.data = bytes.data();
  info.nbytes = bytes.size();
  std::vector<float> values(static_cast<size_t>(ggml_nelements(t)));
  TensorStore::to_f32(info, values.data());
  return values;
}

uint64_t ModelWeights::checksum(const std::string& name) const {
  const ggml_tensor* t = find(name);
  if (!t) fail(ErrorCode::InvalidArgument, "no weight named '" + name + "'");
  std::vector<uint8_t> bytes(ggml_nbytes(t));
  ggml_backend_tensor_get(t, bytes.data(), 0, bytes.size());
  TensorInfo info;
  info.name = name;
  info.dtype = dtype_of(t->type);
  info.ggml_type = t->type;
  for (int i = ggml_n_dims(t) - 1; i >= 0; --i) info.shape.push_back(t->ne[i]);
  info.data = bytes.data();
  info.nbytes = bytes.size();
  return tensor_checksum(info);
}

}  // namespace sdn
