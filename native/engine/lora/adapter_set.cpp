#include "lora/adapter_set.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "core/error.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "lora/lora_delta.h"
#include "pipeline/backend.h"
#include "pipeline/graph.h"

namespace sdn {

namespace {

// Weight elements merged per graph. Low-rank updates are made in row pieces; the other kinds
// hold a few f32 copies of a weight in the compute buffer.
constexpr int64_t kMergeChunkElements = 32 << 20;
// Graph nodes one update takes at most (Tucker LoHa with DoRA) besides its row pieces, and one weight's own.
constexpr size_t kNodesPerUpdate = 48, kNodesPerWeight = 8;
// A low-rank update is made in pieces of rows of about this many elements (16 MB in f32): the
// merge's transient memory beside the copies (1 M elements measured 10-30% slower switches).
constexpr int64_t kPieceElements = 4 << 20;

int64_t piece_rows(int64_t per_out) { return std::max<int64_t>(1, kPieceElements / std::max<int64_t>(1, per_out)); }

struct Contribution {
  const LoraTarget* target;
  float weight;
};

// [per_out, rows]: a weight as the rows of its first dimension; a bias as one row.
std::pair<int64_t, int64_t> row_shape(const ggml_tensor* t, const std::vector<int64_t>& shape) {
  const int64_t rows = shape.size() >= 2 ? shape[0] : 1;
  return {ggml_nelements(t) / rows, rows};
}

bool runtime_eligible(const std::string& name, const ggml_tensor* base, const std::vector<Contribution>& cs) {
  if (!ggml_is_quantized(base->type)) return false;
  // Token and position tables are looked up, not multiplied: no layer could add an update.
  if (name.find("_embedding.") != std::string::npos) return false;
  for (const Contribution& c : cs) {
    const LoraTarget& t = *c.target;
    if (t.kind != LoraKind::LowRank || t.dora || t.parts.count(LoraPart::Mid) || t.shape.size() != 2) return false;
  }
  return true;
}

bool uploaded(LoraPart p) { return p != LoraPart::Alpha && p != LoraPart::Scale; }

// A part as an f32 tensor of its file shape (ne order), in `ctx`.
ggml_tensor* new_part_tensor(ggml_context* ctx, const TensorInfo& info) {
  int64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
  const size_t n = info.shape.size();
  if (n > GGML_MAX_DIMS) fail(ErrorCode::ModelFormat, "LoRA tensor '" + info.name + "' has more than 4 dimensions");
  for (size_t i = 0; i < n; ++i) ne[i] = info.shape[n - 1 - i];
  return ggml_new_tensor(ctx, GGML_TYPE_F32, std::max<int>(1, static_cast<int>(n)), ne);
}

void upload_f32(ggml_tensor* t, const TensorInfo& info) {
  std::vector<float> values(static_cast<size_t>(info.numel()));
  TensorStore::to_f32(info, values.data());
  ggml_backend_tensor_set(t, values.data(), 0, values.size() * sizeof(float));
}

struct OwnedContext {
  ggml_context* ctx = nullptr;
  ggml_backend_buffer_t buffer = nullptr;
  ~OwnedContext() {
    if (buffer) ggml_backend_buffer_free(buffer);
    if (ctx) ggml_free(ctx);
  }
};

ggml_context* new_metadata_context(size_t tensors) {
  ggml_init_params params{};
  params.mem_size = ggml_tensor_overhead() * (tensors + 1);
  params.no_alloc = true;
  ggml_context* ctx = ggml_init(params);
  if (!ctx) fail(ErrorCode::Resource, "out of memory: cannot allocate a LoRA context");
  return ctx;
}

}  // namespace

LoraSetKey lora_set_key(const std::vector<LoraUse>& uses) {
  LoraSetKey key;
  for (const LoraUse& u : uses) key.emplace_back(u.lora->id(), u.weight);
  return key;
}

AdapterSet::AdapterSet(const ModelWeights& weights, Runtime& runtime, const std::vector<LoraUse>& uses, const JobControl& job,
                       ggml_backend_buffer* recycled)
    : key_(lora_set_key(uses)) {
  try {
    build(weights, runtime, uses, job, recycled);
  } catch (...) {
    // A cancelled or failed build leaves nothing behind (no destructor runs for it).
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (ctx_) ggml_free(ctx_);
    throw;
  }
}

void AdapterSet::build(const ModelWeights& weights, Runtime& runtime, const std::vector<LoraUse>& uses, const JobControl& job,
                       ggml_backend_buffer* recycled) {
  struct Recycled {
    ggml_backend_buffer* buffer;
    ~Recycled() {
      if (buffer) ggml_backend_buffer_free(buffer);
    }
  } old{recycled};
  // 1. Every touched weight and the updates it takes, in name order (a fixed summation order).
  std::map<std::string, std::vector<Contribution>> by_weight;
  for (const LoraUse& use : uses) {
    if (!use.lora->made_for(weights)) fail(ErrorCode::InvalidArgument, "a LoRA loaded for another model: " + use.lora->path());
    if (use.weight == 0.0f) continue;
    for (const LoraTarget& t : use.lora->targets()) by_weight[t.weight].push_back({&t, use.weight});
  }

  // 2. Decide each weight's way and declare what the set keeps.
  size_t declared = 0;
  for (const auto& [name, cs] : by_weight) declared += 1 + 2 * cs.size();
  ctx_ = new_metadata_context(declared);
  struct Merge {
    const std::string* name;
    ggml_tensor* base;
    int64_t per_out, rows;  // the weight as rows (row_shape)
    const std::vector<Contribution>* cs;
  };
  std::vector<Merge> merges;
  std::vector<std::pair<const TensorInfo*, ggml_tensor*>> runtime_parts;
  for (const auto& [name, cs] : by_weight) {
    ggml_tensor* base = weights.find(name);
    if (!base) fail(ErrorCode::Internal, "LoRA target '" + name + "' is no weight of the model");
    if (runtime_eligible(name, base, cs)) {
      std::vector<LowRankAdapter>& list = runtime_[name];
      for (const Contribution& c : cs) {
        const TensorInfo* down = c.target->parts.at(LoraPart::Down);
        const TensorInfo* up = c.target->parts.at(LoraPart::Up);
        const int64_t r = c.target->rank;
        LowRankAdapter a;
        a.down = ggml_new_tensor_2d(ctx_, GGML_TYPE_F32, down->numel() / r, r);  // [IN, R]
        a.up = ggml_new_tensor_2d(ctx_, GGML_TYPE_F32, r, up->numel() / r);      // [R, OUT]
        a.scale = c.weight * c.target->scale;
        runtime_parts.emplace_back(down, a.down);
        runtime_parts.emplace_back(up, a.up);
        list.push_back(a);
      }
    } else {
      merged_[name] = ggml_dup_tensor(ctx_, base);
      const auto [per_out, rows] = row_shape(base, weights.shape(name));
      merges.push_back({&name, base, per_out, rows, &cs});
    }
  }
  if (merged_.empty() && runtime_.empty()) return;
  // Into the replaced set's buffer when the tensors fit (its pages are already mapped), else a new one.
  size_t needed = 0;
  ggml_backend_buffer_type* buft = runtime.weight_buffer_type();
  const size_t align = ggml_backend_buft_get_alignment(buft);
  for (ggml_tensor* t = ggml_get_first_tensor(ctx_); t; t = ggml_get_next_tensor(ctx_, t))
    needed += GGML_PAD(ggml_backend_buft_get_alloc_size(buft, t), align);
  if (old.buffer && ggml_backend_buffer_get_type(old.buffer) == buft && ggml_backend_buffer_get_size(old.buffer) >= needed &&
      ggml_backend_buffer_get_size(old.buffer) <= 2 * needed + (64 << 20)) {
    buffer_ = old.buffer;
    old.buffer = nullptr;
    ggml_tallocr alloc = ggml_tallocr_new(buffer_);
    for (ggml_tensor* t = ggml_get_first_tensor(ctx_); t; t = ggml_get_next_tensor(ctx_, t)) {
      if (ggml_tallocr_alloc(&alloc, t) != GGML_STATUS_SUCCESS) fail(ErrorCode::Internal, "a recycled LoRA buffer did not fit its tensors");
    }
  } else {
    if (old.buffer) {
      ggml_backend_buffer_free(old.buffer);  // before the new one: the two would add up
      old.buffer = nullptr;
    }
    buffer_ = ggml_backend_alloc_ctx_tensors_from_buft(ctx_, buft);
    if (!buffer_) fail(ErrorCode::Resource, "out of device memory for the LoRAs' patched weights");
  }
  for (const auto& [info, t] : runtime_parts) upload_f32(t, *info);

  // 3. The merged copies, a chunk of weights per graph: their parts uploaded, then for each
  //    weight its rows in f32 plus the updates, written into the copy in the weight's type.
  for (size_t i = 0; i < merges.size();) {
    job.throw_if_cancelled();
    size_t j = i;
    int64_t elements = 0;
    size_t parts = 0, nodes = 0;
    while (j < merges.size()) {
      const Merge& m = merges[j];
      const int64_t n = ggml_nelements(m.base);
      if (j > i && elements + n > kMergeChunkElements) break;
      elements += n;
      for (const Contribution& c : *m.cs) parts += c.target->parts.size();
      const int64_t pieces = (m.rows + piece_rows(m.per_out) - 1) / piece_rows(m.per_out);
      nodes += kNodesPerWeight + (kNodesPerUpdate + 4 * size_t(pieces)) * m.cs->size();
      ++j;
    }

    OwnedContext part_store;
    part_store.ctx = new_metadata_context(parts);
    std::vector<std::vector<LoraPartTensors>> part_tensors;
    std::vector<std::pair<const TensorInfo*, ggml_tensor*>> uploads;
    for (size_t k = i; k < j; ++k) {
      part_tensors.emplace_back();
      for (const Contribution& c : *merges[k].cs) {
        LoraPartTensors pt;
        for (const auto& [p, info] : c.target->parts) {
          if (!uploaded(p)) continue;
          ggml_tensor* t = new_part_tensor(part_store.ctx, *info);
          pt[p] = t;
          uploads.emplace_back(info, t);
        }
        part_tensors.back().push_back(std::move(pt));
      }
    }
    part_store.buffer = ggml_backend_alloc_ctx_tensors_from_buft(part_store.ctx, runtime.weight_buffer_type());
    if (!part_store.buffer) fail(ErrorCode::Resource, "out of device memory for a LoRA's tensors");
    for (const auto& [info, t] : uploads) upload_f32(t, *info);

    GraphContext g(nodes);
    std::vector<ggml_tensor*> row_ids;
    for (size_t k = i; k < j; ++k) {
      const Merge& m = merges[k];
      ggml_tensor* base = m.base;
      const int64_t per_out = m.per_out, rows = m.rows;
      const std::vector<Contribution>& cs = *m.cs;
      ggml_tensor* copy = ggml_reshape_2d(g.ctx, merged_.at(*m.name), per_out, rows);
      const bool in_place = (base->type == GGML_TYPE_F16 || base->type == GGML_TYPE_F32) &&
                            std::none_of(cs.begin(), cs.end(), [](const Contribution& c) { return needs_base_rows(*c.target); });
      if (in_place) {
        // f16 / f32 without DoRA: the copy made and each update added into it, in its own type
        // (as stable-diffusion.cpp merges into its weights), no f32 copy of the whole weight.
        ggml_tensor* copied = ggml_cpy(g.ctx, ggml_reshape_2d(g.ctx, base, per_out, rows), copy);
        ggml_build_forward_expand(g.graph, copied);
        for (size_t c = 0; c < cs.size(); ++c) {
          const LoraTarget& t = *cs[c].target;
          const LoraPartTensors& pt = part_tensors[k - i][c];
          if (t.kind != LoraKind::LowRank) {
            ggml_build_forward_expand(g.graph, add_lora_update(g.ctx, copied, nullptr, t, pt, cs[c].weight));
            continue;
          }
          // Low rank: ΔW in pieces of rows, each added as soon as it is made, so the compute
          // buffer holds one piece however large the weight.
          const LowRankFactors f = low_rank_factors(g.ctx, t, pt, cs[c].weight * t.scale);
          const int64_t step = piece_rows(per_out);
          for (int64_t r0 = 0; r0 < rows; r0 += step) {
            const int64_t n = std::min(step, rows - r0);
            ggml_tensor* up = ggml_view_2d(g.ctx, f.up, f.up->ne[0], n, f.up->nb[1], size_t(r0) * f.up->nb[1]);
            ggml_tensor* rows_view = ggml_view_2d(g.ctx, copied, per_out, n, copied->nb[1], size_t(r0) * copied->nb[1]);
            ggml_build_forward_expand(g.graph, ggml_add_inplace(g.ctx, rows_view, ggml_mul_mat(g.ctx, f.left, up)));
          }
        }
        row_ids.push_back(nullptr);
        continue;
      }
      ggml_tensor* ids = ggml_new_tensor_1d(g.ctx, GGML_TYPE_I32, rows);
      ggml_set_input(ids);
      row_ids.push_back(ids);
      // get_rows reads any float or block type as f32 rows.
      ggml_tensor* base_rows = ggml_get_rows(g.ctx, ggml_reshape_2d(g.ctx, base, per_out, rows), ids);  // [per_out, rows]
      ggml_tensor* acc = ggml_dup(g.ctx, base_rows);
      for (size_t c = 0; c < cs.size(); ++c) {
        acc = add_lora_update(g.ctx, acc, base_rows, *cs[c].target, part_tensors[k - i][c], cs[c].weight);
      }
      ggml_build_forward_expand(g.graph, ggml_cpy(g.ctx, acc, copy));
    }
    ResetOnExit reset{runtime};
    runtime.allocate(g.graph);
    for (ggml_tensor* ids : row_ids) {
      if (!ids) continue;
      std::vector<int32_t> index(static_cast<size_t>(ids->ne[0]));
      std::iota(index.begin(), index.end(), 0);
      ggml_backend_tensor_set(ids, index.data(), 0, index.size() * sizeof(int32_t));
    }
    runtime.compute(g.graph, job, 0);
    // The chunk's bases are not read again while the set is in use: pages of the file's map
    // go (the copies take their place in memory), so switching adds little more than a chunk.
    for (size_t k = i; k < j; ++k) weights.release_pages(*merges[k].name);
    i = j;
  }
}

AdapterSet::~AdapterSet() {
  if (buffer_) ggml_backend_buffer_free(buffer_);
  if (ctx_) ggml_free(ctx_);
}

ggml_tensor* AdapterSet::replacement(const std::string& name) const {
  auto it = merged_.find(name);
  return it == merged_.end() ? nullptr : it->second;
}

const std::vector<LowRankAdapter>* AdapterSet::adapters(const std::string& name) const {
  auto it = runtime_.find(name);
  return it == runtime_.end() ? nullptr : &it->second;
}

size_t AdapterSet::bytes() const { return buffer_ ? ggml_backend_buffer_get_size(buffer_) : 0; }

ggml_backend_buffer* AdapterSet::release_buffer() {
  ggml_backend_buffer* b = buffer_;
  buffer_ = nullptr;
  merged_.clear();
  runtime_.clear();
  return b;
}

ggml_tensor* AdaptedWeights::require(const std::string& name, int rank) {
  ggml_tensor* t = base_.require(name, rank);
  if (!set_) return t;
  if (ggml_tensor* r = set_->replacement(name)) return r;
  if (set_->adapters(name)) unconsumed_.insert(name);
  return t;
}

ggml_tensor* AdaptedWeights::require_f32(const std::string& name, int rank) {
  ggml_tensor* t = base_.require_f32(name, rank);
  if (!set_) return t;
  ggml_tensor* r = set_->replacement(name);
  return r ? r : t;
}

const std::vector<LowRankAdapter>* AdaptedWeights::adapters(const std::string& name) {
  const std::vector<LowRankAdapter>* a = set_ ? set_->adapters(name) : nullptr;
  if (a) unconsumed_.erase(name);
  return a;
}

void AdaptedWeights::check_adapters_consumed() const {
  if (!unconsumed_.empty())
    fail(ErrorCode::Internal, "LoRA updates of '" + *unconsumed_.begin() + "' were not applied: its consumer is no linear layer");
}

}  // namespace sdn
