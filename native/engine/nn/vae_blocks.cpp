#include "nn/vae_blocks.h"

#include "core/error.h"
#include "nn/attention.h"

namespace sdn {

namespace {

std::string quoted(const std::string& prefix) { return "'" + prefix + "'"; }

// A 1×1 conv's weight and bias: [1, 1, C, C] (file [C, C, 1, 1]) and [C].
void load_pointwise(WeightLookup& w, const std::string& prefix, int64_t channels, ggml_tensor*& weight,
                    ggml_tensor*& bias) {
  Conv2d c = Conv2d::load(w, prefix);
  expect_dim(quoted(prefix) + " kernel size", c.kernel(), 1);
  expect_dim(quoted(prefix) + " input channels", c.in_channels(), channels);
  expect_dim(quoted(prefix) + " output channels", c.out_channels(), channels);
  if (!c.bias) fail(ErrorCode::ModelCompatibility, "the model has no tensor '" + prefix + ".bias'");
  weight = c.weight;
  bias = c.bias;
}

// x [C_in, T, N] -> W x + b, [C_out, T, N], with W the 1×1 kernel [1, 1, C_in, C_out].
ggml_tensor* pointwise(ggml_context* ctx, ggml_tensor* weight, ggml_tensor* bias, ggml_tensor* x) {
  ggml_tensor* w2 = ggml_reshape_2d(ctx, weight, weight->ne[2], weight->ne[3]);  // [C_in, C_out]
  return ggml_add(ctx, ggml_mul_mat(ctx, w2, x), bias);
}

}  // namespace

VaeResBlock VaeResBlock::load(WeightLookup& w, const std::string& prefix, int64_t in_channels) {
  VaeResBlock b;
  b.norm1 = GroupNorm::load(w, prefix + ".norm1", kVaeGroups, kVaeEps);
  expect_dim(quoted(prefix + ".norm1") + " channels", b.norm1.channels(), in_channels);
  b.conv1 = Conv2d::load(w, prefix + ".conv1");
  expect_dim(quoted(prefix + ".conv1") + " input channels", b.conv1.in_channels(), in_channels);
  const int64_t out = b.conv1.out_channels();
  b.norm2 = GroupNorm::load(w, prefix + ".norm2", kVaeGroups, kVaeEps);
  expect_dim(quoted(prefix + ".norm2") + " channels", b.norm2.channels(), out);
  b.conv2 = Conv2d::load(w, prefix + ".conv2");
  expect_dim(quoted(prefix + ".conv2") + " input channels", b.conv2.in_channels(), out);
  expect_dim(quoted(prefix + ".conv2") + " output channels", b.conv2.out_channels(), out);
  if (in_channels != out) {
    if (!w.has(prefix + ".nin_shortcut.weight")) {
      fail(ErrorCode::ModelCompatibility, "the model has no tensor '" + prefix + ".nin_shortcut.weight' (" +
                                              std::to_string(in_channels) + " -> " + std::to_string(out) + " channels)");
    }
    b.nin_shortcut = Conv2d::load(w, prefix + ".nin_shortcut");
    expect_dim(quoted(prefix + ".nin_shortcut") + " kernel size", b.nin_shortcut.kernel(), 1);
    expect_dim(quoted(prefix + ".nin_shortcut") + " input channels", b.nin_shortcut.in_channels(), in_channels);
    expect_dim(quoted(prefix + ".nin_shortcut") + " output channels", b.nin_shortcut.out_channels(), out);
  }
  return b;
}

ggml_tensor* vae_resblock(ggml_context* ctx, const VaeResBlock& b, ggml_tensor* x, const std::string& name) {
  ggml_tensor* h = ggml_silu(ctx, group_norm(ctx, b.norm1, x));  // [W, H, C_in, N]
  h = conv2d(ctx, b.conv1, h);                               // [W, H, C_out, N]
  h = ggml_silu(ctx, group_norm(ctx, b.norm2, h));
  h = conv2d(ctx, b.conv2, h);  // [W, H, C_out, N]
  ggml_tensor* skip = b.nin_shortcut.weight ? conv2d(ctx, b.nin_shortcut, x) : x;
  ggml_tensor* y = ggml_add(ctx, skip, h);
  ggml_format_name(y, "%s", name.c_str());
  return y;
}

VaeAttention VaeAttention::load(WeightLookup& w, const std::string& prefix, int64_t channels) {
  VaeAttention a;
  a.norm = GroupNorm::load(w, prefix + ".norm", kVaeGroups, kVaeEps);
  expect_dim(quoted(prefix + ".norm") + " channels", a.norm.channels(), channels);
  load_pointwise(w, prefix + ".q", channels, a.q_w, a.q_b);
  load_pointwise(w, prefix + ".k", channels, a.k_w, a.k_b);
  load_pointwise(w, prefix + ".v", channels, a.v_w, a.v_b);
  load_pointwise(w, prefix + ".proj_out", channels, a.proj_w, a.proj_b);
  return a;
}

ggml_tensor* vae_attention(ggml_context* ctx, const VaeAttention& a, ggml_tensor* x, const std::string& name) {
  const int64_t w = x->ne[0], h = x->ne[1], c = x->ne[2], n = x->ne[3];
  ggml_tensor* t = group_norm(ctx, a.norm, x);                                      // [W, H, C, N]
  t = ggml_cont(ctx, ggml_transpose(ctx, ggml_reshape_3d(ctx, t, w * h, c, n)));  // [C, H·W, N]
  ggml_format_name(t, "%s.tokens", name.c_str());
  ggml_tensor* q = pointwise(ctx, a.q_w, a.q_b, t);  // [C, H·W, N]
  ggml_tensor* k = pointwise(ctx, a.k_w, a.k_b, t);
  ggml_tensor* v = pointwise(ctx, a.v_w, a.v_b, t);
  ggml_tensor* o = multihead_attention(ctx, q, k, v, 1, false);  // [C, H·W, N]
  o = pointwise(ctx, a.proj_w, a.proj_b, o);                      // [C, H·W, N]
  o = ggml_reshape_4d(ctx, ggml_cont(ctx, ggml_transpose(ctx, o)), w, h, c, n);  // [W, H, C, N]
  ggml_tensor* y = ggml_add(ctx, x, o);
  ggml_format_name(y, "%s", name.c_str());
  return y;
}

VaeDownsample VaeDownsample::load(WeightLookup& w, const std::string& prefix, int64_t channels) {
  VaeDownsample d;
  d.conv = Conv2d::load(w, prefix + ".conv", 2);
  expect_dim(quoted(prefix + ".conv") + " kernel size", d.conv.kernel(), 3);
  expect_dim(quoted(prefix + ".conv") + " input channels", d.conv.in_channels(), channels);
  expect_dim(quoted(prefix + ".conv") + " output channels", d.conv.out_channels(), channels);
  return d;
}

ggml_tensor* vae_downsample(ggml_context* ctx, const VaeDownsample& d, ggml_tensor* x, const std::string& name) {
  // torch.nn.functional.pad(x, (0, 1, 0, 1)): one zero column on the right, one zero row below.
  ggml_tensor* p = ggml_pad(ctx, x, 1, 1, 0, 0);  // [W+1, H+1, C, N]
  ggml_tensor* y = conv2d(ctx, d.conv, p, 0);  // [W/2, H/2, C, N] (stride 2)
  ggml_format_name(y, "%s", name.c_str());
  return y;
}

VaeUpsample VaeUpsample::load(WeightLookup& w, const std::string& prefix, int64_t channels) {
  VaeUpsample u;
  u.conv = Conv2d::load(w, prefix + ".conv");
  expect_dim(quoted(prefix + ".conv") + " input channels", u.conv.in_channels(), channels);
  expect_dim(quoted(prefix + ".conv") + " output channels", u.conv.out_channels(), channels);
  return u;
}

ggml_tensor* vae_upsample(ggml_context* ctx, const VaeUpsample& u, ggml_tensor* x, const std::string& name) {
  ggml_tensor* y = conv2d(ctx, u.conv, upsample_nearest2x(ctx, x));  // [2W, 2H, C, N]
  ggml_format_name(y, "%s", name.c_str());
  return y;
}

VaeMid VaeMid::load(WeightLookup& w, const std::string& prefix, int64_t channels) {
  VaeMid m;
  m.block_1 = VaeResBlock::load(w, prefix + ".block_1", channels);
  expect_dim(quoted(prefix + ".block_1") + " output channels", m.block_1.out_channels(), channels);
  m.attn_1 = VaeAttention::load(w, prefix + ".attn_1", channels);
  m.block_2 = VaeResBlock::load(w, prefix + ".block_2", channels);
  expect_dim(quoted(prefix + ".block_2") + " output channels", m.block_2.out_channels(), channels);
  return m;
}

ggml_tensor* vae_mid(ggml_context* ctx, const VaeMid& m, ggml_tensor* x, const std::string& name) {
  x = vae_resblock(ctx, m.block_1, x, name + ".block_1");
  x = vae_attention(ctx, m.attn_1, x, name + ".attn_1");
  return vae_resblock(ctx, m.block_2, x, name + ".block_2");
}

}  // namespace sdn
