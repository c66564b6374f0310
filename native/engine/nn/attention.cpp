#include "nn/attention.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "ggml-backend.h"

namespace sdn {

namespace {

bool flash_allowed_by_environment() {
  const char* v = std::getenv("SDNODE_FLASH_ATTENTION");
  return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0));
}

// The fused op on per-head views, or null when `backend` cannot run it for these tensors.
// q [dh, N, H, B], k and v [dh, M, H, B] (views) -> [dh, H, N, B].
ggml_tensor* try_flash(ggml_context* ctx, ggml_backend_t backend, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v,
                       float scale) {
  // Nodes built here and not taken stay in the context, outside the graph: metadata only.
  ggml_tensor* out = ggml_flash_attn_ext(ctx, q, k, v, nullptr, scale, 0.0f, 0.0f);
  ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
  if (ggml_backend_supports_op(backend, out)) return out;
  if (k->type == GGML_TYPE_F16 && v->type == GGML_TYPE_F16) return nullptr;
  // GPU kernels mostly take f16 keys and values only.
  ggml_tensor* k16 = ggml_cast(ctx, k, GGML_TYPE_F16);
  ggml_tensor* v16 = ggml_cast(ctx, v, GGML_TYPE_F16);
  if (!ggml_backend_supports_op(backend, k16) || !ggml_backend_supports_op(backend, v16)) return nullptr;
  out = ggml_flash_attn_ext(ctx, q, k16, v16, nullptr, scale, 0.0f, 0.0f);
  ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
  return ggml_backend_supports_op(backend, out) ? out : nullptr;
}

}  // namespace

ggml_tensor* multihead_attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, int heads,
                                 bool causal, const AttentionOptions& options) {
  const int64_t d = q->ne[0], n = q->ne[1], m = k->ne[1], b = q->ne[2];
  const int64_t dh = d / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  // [D, N, B] -> [dh, N, H, B]: one matrix per head.
  ggml_tensor* qh = ggml_permute(ctx, ggml_reshape_4d(ctx, q, dh, heads, n, b), 0, 2, 1, 3);
  ggml_tensor* kh = ggml_permute(ctx, ggml_reshape_4d(ctx, k, dh, heads, m, b), 0, 2, 1, 3);

  if (options.backend && !causal && flash_allowed_by_environment()) {
    ggml_tensor* vh = ggml_permute(ctx, ggml_reshape_4d(ctx, v, dh, heads, m, b), 0, 2, 1, 3);
    if (ggml_tensor* out = try_flash(ctx, options.backend, qh, kh, vh, scale)) {
      return ggml_reshape_3d(ctx, out, d, n, b);  // [dh, H, N, B] is [D, N, B]
    }
  }

  // v as [M, dh, H, B], so the weighted sum is one mul_mat.
  ggml_tensor* vt = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, v, dh, heads, m, b), 1, 2, 0, 3));
  ggml_tensor* scores = ggml_mul_mat(ctx, kh, qh);  // [M, N, H, B]
  if (causal) scores = ggml_diag_mask_inf(ctx, scores, 0);
  scores = ggml_soft_max_ext(ctx, scores, nullptr, scale, 0.0f);  // softmax(scale · scores); -inf stays -inf

  ggml_tensor* out = ggml_mul_mat(ctx, vt, scores);          // [dh, N, H, B]
  out = ggml_cont(ctx, ggml_permute(ctx, out, 0, 2, 1, 3));  // [dh, H, N, B]
  return ggml_reshape_3d(ctx, out, d, n, b);
}

}  // namespace sdn
