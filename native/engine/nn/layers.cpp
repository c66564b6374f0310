#include "nn/layers.h"

#include "core/error.h"

namespace sdn {

Conv2d Conv2d::load(WeightLookup& w, const std::string& prefix, int stride) {
  Conv2d c;
  c.weight = w.require(prefix + ".weight", 4);
  c.stride = stride;
  if (c.weight->ne[0] != c.weight->ne[1] || c.weight->ne[0] % 2 == 0) {
    fail(ErrorCode::ModelCompatibility, "'" + prefix + ".weight' is not an odd square kernel");
  }
  if (w.has(prefix + ".bias")) {
    c.bias = w.require_f32(prefix + ".bias", 1);
    expect_dim("'" + prefix + ".bias' length", c.bias->ne[0], c.out_channels());
  }
  return c;
}

ggml_tensor* conv2d(ggml_context* ctx, const Conv2d& conv, ggml_tensor* x, int pad) {
  ggml_tensor* w = conv.weight;  // [KW, KH, IC, OC]
  const ggml_type col_type = w->type == GGML_TYPE_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
  ggml_tensor* cols = ggml_im2col(ctx, w, x, conv.stride, conv.stride, pad, pad, 1, 1, true, col_type);
  // cols [KW·KH·IC, OW, OH, N] · kernel [KW·KH·IC, OC] -> [OW·OH·N, OC]
  ggml_tensor* y = ggml_mul_mat(ctx, ggml_reshape_2d(ctx, cols, cols->ne[0], cols->ne[1] * cols->ne[2] * cols->ne[3]),
                                ggml_reshape_2d(ctx, w, w->ne[0] * w->ne[1] * w->ne[2], w->ne[3]));
  y = ggml_reshape_4d(ctx, y, cols->ne[1], cols->ne[2], cols->ne[3], w->ne[3]);  // [OW, OH, N, OC]
  y = ggml_cont(ctx, ggml_permute(ctx, y, 0, 1, 3, 2));                          // [OW, OH, OC, N]
  if (conv.bias) y = ggml_add(ctx, y, ggml_reshape_4d(ctx, conv.bias, 1, 1, conv.bias->ne[0], 1));
  return y;
}

ggml_tensor* conv2d(ggml_context* ctx, const Conv2d& conv, ggml_tensor* x) {
  return conv2d(ctx, conv, x, static_cast<int>(conv.kernel() / 2));
}

GroupNorm GroupNorm::load(WeightLookup& w, const std::string& prefix, int groups, float eps) {
  GroupNorm n;
  n.weight = w.require_f32(prefix + ".weight", 1);
  n.bias = w.require_f32(prefix + ".bias", 1);
  n.groups = groups;
  n.eps = eps;
  expect_dim("'" + prefix + ".bias' length", n.bias->ne[0], n.channels());
  if (n.channels() % groups != 0) {
    fail(ErrorCode::ModelCompatibility, "'" + prefix + "' has " + std::to_string(n.channels()) +
                                            " channels, not divisible into " + std::to_string(groups) + " groups");
  }
  return n;
}

ggml_tensor* group_norm(ggml_context* ctx, const GroupNorm& norm, ggml_tensor* x) {
  int64_t c = norm.channels();
  ggml_tensor* y = ggml_group_norm(ctx, x, norm.groups, norm.eps);
  y = ggml_mul(ctx, y, ggml_reshape_4d(ctx, norm.weight, 1, 1, c, 1));
  return ggml_add(ctx, y, ggml_reshape_4d(ctx, norm.bias, 1, 1, c, 1));
}

Linear Linear::load(WeightLookup& w, const std::string& prefix) {
  Linear l;
  l.weight = w.require(prefix + ".weight", 2);
  if (w.has(prefix + ".bias")) {
    l.bias = w.require_f32(prefix + ".bias", 1);
    expect_dim("'" + prefix + ".bias' length", l.bias->ne[0], l.out_features());
  }
  return l;
}

ggml_tensor* linear(ggml_context* ctx, const Linear& l, ggml_tensor* x) {
  ggml_tensor* y = ggml_mul_mat(ctx, l.weight, x);
  return l.bias ? ggml_add(ctx, y, l.bias) : y;
}

LayerNorm LayerNorm::load(WeightLookup& w, const std::string& prefix, float eps) {
  LayerNorm n;
  n.weight = w.require_f32(prefix + ".weight", 1);
  n.bias = w.require_f32(prefix + ".bias", 1);
  n.eps = eps;
  expect_dim("'" + prefix + ".bias' length", n.bias->ne[0], n.weight->ne[0]);
  return n;
}

ggml_tensor* layer_norm(ggml_context* ctx, const LayerNorm& norm, ggml_tensor* x) {
  ggml_tensor* y = ggml_norm(ctx, x, norm.eps);
  return ggml_add(ctx, ggml_mul(ctx, y, norm.weight), norm.bias);
}

ggml_tensor* upsample_nearest2x(ggml_context* ctx, ggml_tensor* x) { return ggml_upscale(ctx, x, 2, GGML_SCALE_MODE_NEAREST); }

}  // namespace sdn
