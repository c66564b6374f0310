#include "nn/attention.h"

#include <cmath>

namespace sdn {

ggml_tensor* multihead_attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, int heads,
                                 bool causal) {
  const int64_t d = q->ne[0], n = q->ne[1], m = k->ne[1], b = q->ne[2];
  const int64_t dh = d / heads;
  // [D, N, B] -> [dh, N, H, B]: one matrix per head.
  q = ggml_permute(ctx, ggml_reshape_4d(ctx, q, dh, heads, n, b), 0, 2, 1, 3);
  k = ggml_permute(ctx, ggml_reshape_4d(ctx, k, dh, heads, m, b), 0, 2, 1, 3);
  // v as [M, dh, H, B], so the weighted sum is one mul_mat.
  v = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, v, dh, heads, m, b), 1, 2, 0, 3));

  ggml_tensor* scores = ggml_mul_mat(ctx, k, q);  // [M, N, H, B]
  scores = ggml_scale(ctx, scores, 1.0f / std::sqrt(static_cast<float>(dh)));
  if (causal) scores = ggml_diag_mask_inf(ctx, scores, 0);
  scores = ggml_soft_max(ctx, scores);

  ggml_tensor* out = ggml_mul_mat(ctx, v, scores);  // [dh, N, H, B]
  out = ggml_cont(ctx, ggml_permute(ctx, out, 0, 2, 1, 3));  // [dh, H, N, B]
  return ggml_reshape_3d(ctx, out, d, n, b);
}

}  // namespace sdn
