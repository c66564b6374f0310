#include "lora/lora.h"

#include <atomic>
#include <cmath>
#include <set>

#include "core/error.h"
#include "lora/lora_names.h"
#include "nn/model_weights.h"

namespace sdn {

namespace {

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

int64_t dim(const TensorInfo* t, size_t i) { return i < t->shape.size() ? t->shape[i] : 1; }

// Why the parts do not fit a weight of `shape`, or "" when they do. Shapes as PyTorch's
// (outermost first); a weight is [out, in] or [out, in, kh, kw]; a bias [out].
struct Fit {
  std::string why;
  int rank = 0;
};

// up [out, r(,1,1)] · down [r, in(, kh, kw)], or Tucker: up [out, r1], mid [r1, r2, kh, kw], down [r2, in].
Fit fit_low_rank(const TensorInfo* up, const TensorInfo* down, const TensorInfo* mid, const std::vector<int64_t>& w) {
  const int64_t out = w[0], per_out = numel(w) / out, kernel = w.size() == 4 ? w[2] * w[3] : 1;
  const int64_t r = dim(down, 0);
  if (r < 1 || numel(down->shape) < 1) return {"rank 0", 0};
  if (dim(up, 0) != out) return {"up " + shape_text(up->shape) + " does not give " + std::to_string(out) + " outputs", 0};
  if (!mid) {
    if (numel(up->shape) != out * r) return {"up " + shape_text(up->shape) + " does not match down's rank " + std::to_string(r), 0};
    if (numel(down->shape) != r * per_out) return {"down " + shape_text(down->shape) + " does not fit the weight", 0};
  } else {
    const int64_t r1 = dim(mid, 0);
    if (w.size() != 4 || mid->shape.size() != 4 || dim(mid, 1) != r || dim(mid, 2) != w[2] || dim(mid, 3) != w[3] ||
        numel(up->shape) != out * r1 || numel(down->shape) != r * (per_out / kernel))
      return {"up " + shape_text(up->shape) + ", mid " + shape_text(mid->shape) + ", down " + shape_text(down->shape) +
                  " are no Tucker factors of the weight",
              0};
  }
  return {"", static_cast<int>(r)};
}

// kron(w1 [a, b], w2 [c, d(, kh, kw)]) with out = a·c, in = b·d.
Fit fit_lokr(const std::map<LoraPart, const TensorInfo*>& p, const std::vector<int64_t>& w) {
  auto get = [&](LoraPart k) -> const TensorInfo* { auto it = p.find(k); return it == p.end() ? nullptr : it->second; };
  if (get(LoraPart::LokrT2)) return {"Tucker LoKr (lokr_t2) is not supported", 0};
  const TensorInfo *w1 = get(LoraPart::LokrW1), *w1a = get(LoraPart::LokrW1A), *w1b = get(LoraPart::LokrW1B);
  const TensorInfo *w2 = get(LoraPart::LokrW2), *w2a = get(LoraPart::LokrW2A), *w2b = get(LoraPart::LokrW2B);
  if (!(w1 || (w1a && w1b)) || !(w2 || (w2a && w2b))) return {"incomplete LoKr factors", 0};
  int rank = 1;
  int64_t a, b, c;
  if (w1) {
    if (w1->shape.size() != 2) return {"lokr_w1 " + shape_text(w1->shape) + " is not a matrix", 0};
    a = dim(w1, 0), b = dim(w1, 1);
  } else {
    if (w1a->shape.size() != 2 || w1b->shape.size() != 2 || dim(w1a, 1) != dim(w1b, 0)) return {"lokr_w1_a/b do not multiply", 0};
    a = dim(w1a, 0), b = dim(w1b, 1), rank = static_cast<int>(dim(w1b, 0));
  }
  // w2 as rows of its first dimension: c rows of d·kh·kw (conv factors may come flattened).
  int64_t per_c;
  for (const TensorInfo* t : {w1, w1a, w1b, w2, w2a, w2b}) {
    if (t && (t->shape.empty() || numel(t->shape) < 1)) return {"rank 0", 0};
  }
  if (w2) {
    c = dim(w2, 0), per_c = numel(w2->shape) / c;
  } else {
    if (w2a->shape.size() != 2 || dim(w2a, 1) != dim(w2b, 0)) return {"lokr_w2_a/b do not multiply", 0};
    rank = static_cast<int>(dim(w2b, 0));
    c = dim(w2a, 0), per_c = numel(w2b->shape) / rank;
  }
  const int64_t per_out = numel(w) / w[0];
  if (a * c != w[0] || b * per_c != per_out || per_out % (w[1] > 0 ? w[1] : 1) != 0 || per_c % (per_out / w[1]) != 0)
    return {"kron of " + std::to_string(a) + "×" + std::to_string(b) + " and " + std::to_string(c) + "×" + std::to_string(per_c) +
                " does not give " + shape_text(w),
            0};
  if (rank < 1) return {"rank 0", 0};
  return {"", rank};
}

// Every value finite; ModelFormat names the tensor otherwise (to_f32 refuses non-float types).
void check_values(const TensorInfo& t, const JobControl& job) {
  std::vector<float> values(static_cast<size_t>(t.numel()));
  TensorStore::to_f32(t, values.data());
  for (float v : values) {
    if (!std::isfinite(v)) fail(ErrorCode::ModelFormat, "LoRA tensor '" + t.name + "' holds a value that is not finite");
  }
  job.throw_if_cancelled();
}

float scalar(const TensorInfo& t) {
  if (t.numel() != 1) fail(ErrorCode::ModelFormat, "LoRA tensor '" + t.name + "' " + shape_text(t.shape) + " is not a scalar");
  float v = 0;
  TensorStore::to_f32(t, &v);
  return v;
}

std::atomic<uint64_t> next_id{1};

}  // namespace

Lora::Lora(const std::string& path, const ModelWeights& weights, const JobControl& job)
    : id_(next_id++), owner_(weights.id()), path_(path), file_(open_model_file(path)) {
  const LoraGroups groups = group_lora_tensors(file_.store);
  report_.tensors = file_.store.size();
  report_.unmatched = groups.unparsed;
  if (groups.modules.empty()) fail(ErrorCode::ModelFormat, "'" + path + "' holds no LoRA tensors (lora_down/up, lora_A/B, hada_*, lokr_*, diff)");

  std::vector<std::string> names;
  for (const WeightRecord& r : weights.records()) names.push_back(r.name);
  const LoraTargetIndex index(names);
  std::set<std::string> patched;
  for (const LoraModule& m : groups.modules) {
    auto part = [&](LoraPart k) -> const TensorInfo* { auto it = m.parts.find(k); return it == m.parts.end() ? nullptr : it->second; };
    auto unmatched = [&] { for (const auto& [k, t] : m.parts) report_.unmatched.push_back(t->name); };
    auto incompatible = [&](const std::string& why) { report_.incompatible.push_back(m.key + ": " + why); };
    const std::string module = index.module_of(m.key);
    if (module.empty()) {
      unmatched();
      continue;
    }
    for (const auto& [k, t] : m.parts) {
      // An empty factor is a rank-0 update: nothing a trainer writes.
      if (t->numel() < 1) fail(ErrorCode::ModelFormat, "LoRA tensor '" + t->name + "' " + shape_text(t->shape) + " is empty (rank 0)");
      check_values(*t, job);
    }

    LoraTarget t;
    t.parts = m.parts;
    t.weight = module + ".weight";
    if (part(LoraPart::Down) || part(LoraPart::Up)) t.kind = LoraKind::LowRank;
    else if (part(LoraPart::HadaW1A) || part(LoraPart::HadaW1B) || part(LoraPart::HadaW2A) || part(LoraPart::HadaW2B)) t.kind = LoraKind::LoHa;
    else if (part(LoraPart::LokrW1) || part(LoraPart::LokrW1A) || part(LoraPart::LokrW2) || part(LoraPart::LokrW2A)) t.kind = LoraKind::LoKr;
    else if (part(LoraPart::Diff)) t.kind = LoraKind::Diff;
    else if (part(LoraPart::DiffBias)) {
      t.kind = LoraKind::Diff;
      t.weight = module + ".bias";
    } else {
      incompatible("only " + std::string(lora_part_name(m.parts.begin()->first)) + ", no weights to apply");
      continue;
    }
    if (!weights.has(t.weight)) {
      unmatched();
      continue;
    }
    t.shape = weights.shape(t.weight);
    const std::vector<int64_t>& w = t.shape;
    const bool bias = t.weight == module + ".bias";
    if (w.empty() || (!bias && w.size() != 2 && w.size() != 4)) {
      incompatible("the model's " + t.weight + " " + shape_text(w) + " is neither a matrix nor a conv kernel");
      continue;
    }

    Fit fit;
    switch (t.kind) {
      case LoraKind::LowRank:
        if (!part(LoraPart::Down) || !part(LoraPart::Up)) { fit.why = "lora_down or lora_up is missing"; break; }
        fit = fit_low_rank(part(LoraPart::Up), part(LoraPart::Down), part(LoraPart::Mid), w);
        break;
      case LoraKind::LoHa: {
        const TensorInfo *w1a = part(LoraPart::HadaW1A), *w1b = part(LoraPart::HadaW1B), *w2a = part(LoraPart::HadaW2A),
                         *w2b = part(LoraPart::HadaW2B);
        if (!w1a || !w1b || !w2a || !w2b) { fit.why = "incomplete LoHa factors"; break; }
        // Tucker LoHa stores its up factors transposed ([r, out]), as LyCORIS does.
        const bool tucker = part(LoraPart::HadaT1) && part(LoraPart::HadaT2);
        if (tucker) {
          TensorInfo up1 = *w1a, up2 = *w2a;
          std::swap(up1.shape[0], up1.shape[1]);
          std::swap(up2.shape[0], up2.shape[1]);
          fit = fit_low_rank(&up1, w1b, part(LoraPart::HadaT1), w);
          if (fit.why.empty()) fit = fit_low_rank(&up2, w2b, part(LoraPart::HadaT2), w);
        } else {
          fit = fit_low_rank(w1a, w1b, nullptr, w);
          if (fit.why.empty()) fit = fit_low_rank(w2a, w2b, nullptr, w);
        }
        fit.rank = static_cast<int>(dim(w1b, 0));
        break;
      }
      case LoraKind::LoKr:
        fit = fit_lokr(m.parts, w);
        break;
      case LoraKind::Diff: {
        const TensorInfo* d = part(bias ? LoraPart::DiffBias : LoraPart::Diff);
        if (numel(d->shape) != numel(w)) fit.why = "diff " + shape_text(d->shape) + " is not the weight's size";
        break;
      }
    }
    if (!fit.why.empty()) {
      incompatible(fit.why + "; the model's " + t.weight + " is " + shape_text(w));
      continue;
    }
    // A rank past the weight's own sizes is no low-rank update: refused as malformed (it could
    // only make the file, and the work of applying it, huge).
    const int64_t most = std::max<int64_t>(w[0], numel(w) / w[0]);
    if (fit.rank > most)
      fail(ErrorCode::ModelFormat, "LoRA module '" + m.key + "' has rank " + std::to_string(fit.rank) + ", more than the " +
                                       std::to_string(most) + " its weight " + t.weight + " " + shape_text(w) + " allows");
    t.rank = fit.rank;

    // Scale: `.scale` where given, else alpha / rank (LoKr: 1 when both factors are full, as
    // stable-diffusion.cpp), else 1.
    if (const TensorInfo* s = part(LoraPart::Scale)) t.scale = scalar(*s);
    else if (const TensorInfo* a = part(LoraPart::Alpha); a && t.rank > 0) t.scale = scalar(*a) / float(t.rank);
    if (t.kind == LoraKind::LoKr && t.rank == 1 && !part(LoraPart::Scale)) t.scale = 1.0f;
    if (t.kind == LoraKind::Diff) t.scale = 1.0f;

    if (const TensorInfo* dora = part(LoraPart::DoraScale)) {
      const int64_t n = numel(dora->shape);
      const int64_t in = w.size() > 1 ? w[1] : 0;
      if (t.kind == LoraKind::Diff || w.size() < 2) {
        incompatible("a DoRA magnitude on a full-weight patch is not supported");
        continue;
      }
      if (n == w[0] && dim(dora, 0) == w[0]) t.dora_axis = 0;
      else if (n == in) t.dora_axis = 1;
      else {
        incompatible("dora_scale " + shape_text(dora->shape) + " fits neither the outputs nor the inputs of " + shape_text(w));
        continue;
      }
      t.dora = dora;
    }
    if (!patched.insert(t.weight).second) {
      incompatible("a second module patches " + t.weight);
      continue;
    }
    report_.applied_tensors += m.parts.size();
    // A full patch of the weight may come with one of the bias (LyCORIS' diff_b).
    const TensorInfo* diff_b = t.kind == LoraKind::Diff && t.weight != module + ".bias" ? part(LoraPart::DiffBias) : nullptr;
    targets_.push_back(std::move(t));
    if (diff_b) {
      LoraTarget b;
      b.weight = module + ".bias";
      b.kind = LoraKind::Diff;
      b.parts = {{LoraPart::DiffBias, diff_b}};
      if (!weights.has(b.weight) || numel(weights.shape(b.weight)) != numel(diff_b->shape) || !patched.insert(b.weight).second) {
        report_.applied_tensors -= 1;
        incompatible("diff_b " + shape_text(diff_b->shape) + " fits no bias of " + module);
        continue;
      }
      b.shape = weights.shape(b.weight);
      targets_.push_back(std::move(b));
    }
  }
}

bool Lora::made_for(const ModelWeights& weights) const { return owner_ == weights.id(); }

}  // namespace sdn
