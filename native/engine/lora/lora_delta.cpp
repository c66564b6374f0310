#include "lora/lora_delta.h"

#include <functional>
#include <numeric>

#include "core/error.h"

namespace sdn {

namespace {

// Smallest float32 step, as LyCORIS / ComfyUI add to the DoRA norm.
constexpr float kDoraEps = 1.1920929e-07f;

struct Part {
  const TensorInfo* info = nullptr;
  ggml_tensor* t = nullptr;
  int64_t outer() const { return info->shape.empty() ? 1 : info->shape[0]; }
  // [numel / outer, outer]: the PyTorch tensor as rows of its first dimension.
  ggml_tensor* rows(ggml_context* ctx) const { return ggml_reshape_2d(ctx, t, ggml_nelements(t) / outer(), outer()); }
};

Part get(const LoraTarget& target, const LoraPartTensors& parts, LoraPart k) {
  auto i = target.parts.find(k);
  auto t = parts.find(k);
  if (i == target.parts.end() || t == parts.end()) return {};
  return {i->second, t->second};
}

// The left factor L [R1, IN·kh·kw] of a low-rank update ΔW = L^T·up, i.e. ΔW = mul_mat(L, up_rows)
// with up_rows = up [OUT, R1] as ne [R1, OUT]: down [R1, IN(, kh, kw)] transposed, or with a
// Tucker mid [R1, R2, kh, kw] and down [R2, IN], L[a, (hw, in)] = Σ_b mid[a, b, hw] · down[b, in].
ggml_tensor* left_factor(ggml_context* ctx, const Part& down, const Part& mid) {
  ggml_tensor* down_t = ggml_cont(ctx, ggml_transpose(ctx, down.rows(ctx)));  // [R2, IN·k]
  if (!mid.t) return down_t;
  const int64_t kw = mid.t->ne[0], kh = mid.t->ne[1], r2 = mid.t->ne[2], r1 = mid.t->ne[3];
  const int64_t in = down_t->ne[1];
  // R[in, hw, a] = Σ_b down[b, in] · mid[a, b, hw]
  ggml_tensor* mid_b = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_3d(ctx, mid.t, kw * kh, r2, r1), 1, 0, 2, 3));  // [R2, hw, R1]
  ggml_tensor* r = ggml_mul_mat(ctx, down_t, ggml_reshape_2d(ctx, mid_b, r2, kw * kh * r1));                      // [IN, hw·R1]
  ggml_tensor* r_a = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_3d(ctx, r, in, kw * kh, r1), 2, 1, 0, 3));  // [R1, hw, IN]
  return ggml_reshape_2d(ctx, r_a, r1, kw * kh * in);                                                          // [R1, hw·IN]
}

// up · [mid ·] down -> [IN·kh·kw, OUT]; `up_rows` is the up factor as ne [R1, OUT].
ggml_tensor* low_rank(ggml_context* ctx, ggml_tensor* up_rows, const Part& down, const Part& mid) {
  return ggml_mul_mat(ctx, left_factor(ctx, down, mid), up_rows);
}

// An up factor stored [R, OUT] (LyCORIS' Tucker LoHa) as ne [R, OUT], as Part::rows gives
// one stored [OUT, R].
ggml_tensor* up_rows_transposed(ggml_context* ctx, const Part& up) {
  return ggml_cont(ctx, ggml_transpose(ctx, up.rows(ctx)));
}

}  // namespace

LowRankFactors low_rank_factors(ggml_context* ctx, const LoraTarget& target, const LoraPartTensors& parts, float factor) {
  if (target.kind != LoraKind::LowRank) fail(ErrorCode::Internal, "LoRA target " + target.weight + " is no low-rank update");
  const Part up = get(target, parts, LoraPart::Up);
  return {left_factor(ctx, get(target, parts, LoraPart::Down), get(target, parts, LoraPart::Mid)), ggml_scale(ctx, up.rows(ctx), factor)};
}

ggml_tensor* build_lora_delta(ggml_context* ctx, const LoraTarget& target, const LoraPartTensors& parts, float factor) {
  const std::vector<int64_t>& w = target.shape;
  const int64_t out = w.size() >= 2 ? w[0] : 1, per_out = std::accumulate(w.begin(), w.end(), int64_t{1}, std::multiplies<>()) / out;
  const int64_t kh = w.size() == 4 ? w[2] : 1, kw = w.size() == 4 ? w[3] : 1;
  auto part = [&](LoraPart k) { return get(target, parts, k); };

  ggml_tensor* d = nullptr;
  switch (target.kind) {
    case LoraKind::LowRank: {
      // The factor scales the [R, OUT] up factor, not the full-size product.
      const LowRankFactors f = low_rank_factors(ctx, target, parts, factor);
      d = ggml_mul_mat(ctx, f.left, f.up);
      factor = 1.0f;
      break;
    }
    case LoraKind::LoHa: {
      const bool tucker = part(LoraPart::HadaT1).t && part(LoraPart::HadaT2).t;
      auto up = [&](LoraPart k) { return tucker ? up_rows_transposed(ctx, part(k)) : part(k).rows(ctx); };
      ggml_tensor* d1 = low_rank(ctx, up(LoraPart::HadaW1A), part(LoraPart::HadaW1B), tucker ? part(LoraPart::HadaT1) : Part{});
      ggml_tensor* d2 = low_rank(ctx, up(LoraPart::HadaW2A), part(LoraPart::HadaW2B), tucker ? part(LoraPart::HadaT2) : Part{});
      d = ggml_mul(ctx, d1, d2);
      break;
    }
    case LoraKind::LoKr: {
      // kron(w1 [a, b], w2 [c, d, kh, kw]) = w1 upsampled by (c, d) (nearest) times w2 tiled.
      const Part w1 = part(LoraPart::LokrW1), w2 = part(LoraPart::LokrW2);
      ggml_tensor* m1 = w1.t ? w1.rows(ctx) : low_rank(ctx, part(LoraPart::LokrW1A).rows(ctx), part(LoraPart::LokrW1B), {});
      ggml_tensor* m2 = w2.t ? w2.rows(ctx) : low_rank(ctx, part(LoraPart::LokrW2A).rows(ctx), part(LoraPart::LokrW2B), {});
      const int64_t a = m1->ne[1], b = m1->ne[0], c = m2->ne[1], dd = m2->ne[0] / (kh * kw);
      ggml_tensor* m1_4 = ggml_reshape_4d(ctx, ggml_cont(ctx, m1), 1, 1, b, a);
      ggml_tensor* m2_4 = ggml_reshape_4d(ctx, ggml_cont(ctx, m2), kw, kh, dd, c);
      ggml_tensor* spread = ggml_interpolate(ctx, m1_4, kw, kh, b * dd, a * c, GGML_SCALE_MODE_NEAREST);
      d = ggml_mul(ctx, spread, m2_4);
      break;
    }
    case LoraKind::Diff: {
      // A weight's target may carry the module's diff_b too (the bias is its own target).
      const bool bias = target.shape.size() < 2;
      const Part diff = bias ? part(LoraPart::DiffBias) : part(LoraPart::Diff);
      d = diff.t;
      break;
    }
  }
  if (!d) fail(ErrorCode::Internal, "LoRA target " + target.weight + " has no update");
  d = ggml_reshape_2d(ctx, ggml_cont(ctx, d), per_out, out);
  return factor == 1.0f ? d : ggml_scale(ctx, d, factor);
}

ggml_tensor* add_lora_update(ggml_context* ctx, ggml_tensor* rows, ggml_tensor* base_rows, const LoraTarget& target,
                             const LoraPartTensors& parts, float weight) {
  if (!target.dora) return ggml_add_inplace(ctx, rows, build_lora_delta(ctx, target, parts, weight * target.scale));
  // DoRA: the magnitude over the norm of the updated weight, per output row or input column.
  auto mag_it = parts.find(LoraPart::DoraScale);
  if (mag_it == parts.end()) fail(ErrorCode::Internal, "DoRA magnitude of " + target.weight + " not uploaded");
  const int64_t per_out = base_rows->ne[0], out = base_rows->ne[1];
  ggml_tensor* updated = ggml_add(ctx, base_rows, build_lora_delta(ctx, target, parts, target.scale));  // [per_out, out]
  ggml_tensor* decomposed;
  if (target.dora_axis == 0) {
    ggml_tensor* norm = ggml_scale_bias(ctx, ggml_sqrt(ctx, ggml_sum_rows(ctx, ggml_sqr(ctx, updated))), 1.0f, kDoraEps);  // [1, out]
    ggml_tensor* k = ggml_div(ctx, ggml_reshape_2d(ctx, mag_it->second, 1, out), norm);
    decomposed = ggml_mul(ctx, updated, k);
  } else {
    const int64_t in = target.shape[1], kernel = per_out / in;
    ggml_tensor* u3 = ggml_reshape_3d(ctx, updated, kernel, in, out);
    ggml_tensor* by_in = ggml_reshape_2d(ctx, ggml_cont(ctx, ggml_permute(ctx, u3, 0, 2, 1, 3)), kernel * out, in);  // [k·out, in]
    ggml_tensor* norm = ggml_scale_bias(ctx, ggml_sqrt(ctx, ggml_sum_rows(ctx, ggml_sqr(ctx, by_in))), 1.0f, kDoraEps);  // [1, in]
    ggml_tensor* k = ggml_div(ctx, ggml_reshape_2d(ctx, mag_it->second, 1, in), norm);
    decomposed = ggml_reshape_2d(ctx, ggml_mul(ctx, u3, ggml_reshape_3d(ctx, k, 1, in, 1)), per_out, out);
  }
  return ggml_add(ctx, rows, ggml_scale(ctx, ggml_sub(ctx, decomposed, base_rows), weight));
}

}  // namespace sdn
