// The weight update ΔW of one LoRA target as ggml ops, from its parts uploaded as f32 tensors
// (ne order: a PyTorch [A, B, C, D] part is ne [D, C, B, A]). The result is 2-D, [per_out, out]
// — the weight's rows — whatever the weight's rank, so that it adds to the weight read as rows.
// Formulas: kohya sd-scripts (LoRA, LoCon), LyCORIS (LoHa, LoKr, Tucker, DoRA), as
// stable-diffusion.cpp's lora.hpp also reads them.
#pragma once

#include <map>

#include "ggml.h"
#include "lora/lora.h"

namespace sdn {

using LoraPartTensors = std::map<LoraPart, ggml_tensor*>;

// factor · ΔW [per_out, out] f32 (the factor folded into the small up factor where there is one).
ggml_tensor* build_lora_delta(ggml_context* ctx, const LoraTarget& target, const LoraPartTensors& parts, float factor);

// A low-rank update as its two factors, ΔW·factor = mul_mat(left, up): left [R, per_out],
// up [R, out] (scaled). Rows [r0, r1) of ΔW are mul_mat(left, the up columns r0..r1): the
// merge computes a large weight's update in pieces of rows.
struct LowRankFactors {
  ggml_tensor* left;
  ggml_tensor* up;
};
LowRankFactors low_rank_factors(ggml_context* ctx, const LoraTarget& target, const LoraPartTensors& parts, float factor);

// Whether add_lora_update() needs the base weight's rows in f32 (DoRA's norms do).
inline bool needs_base_rows(const LoraTarget& target) { return target.dora != nullptr; }

// The patched weight's rows: `rows` [per_out, out] (f32, or the weight's own type for an
// in-place add) plus `weight` · scale · ΔW, or with a DoRA magnitude W + weight·(DoRA(W + scale·ΔW) − W)
// (ComfyUI's weight_decompose; LyCORIS agrees at weight 1), which needs `base_rows` (f32).
ggml_tensor* add_lora_update(ggml_context* ctx, ggml_tensor* rows, ggml_tensor* base_rows, const LoraTarget& target,
                             const LoraPartTensors& parts, float weight);

}  // namespace sdn
