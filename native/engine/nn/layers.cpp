#include "nn/layers.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/error.h"
#include "nn/op_split.h"

namespace sdn {

Conv2d Conv2d::load(WeightLookup& w, const std::string& prefix, int stride) {
  Conv2d c;
  c.weight = w.require(prefix + ".weight", 4);
  c.stride = stride;
  const std::vector<int64_t> unfolded = w.unfolded_kernel_shape(prefix + ".weight");  // [OC, IC, KH, KW]
  c.unfolded = !unfolded.empty();
  const int64_t kw = c.unfolded ? unfolded[3] : c.weight->ne[0], kh = c.unfolded ? unfolded[2] : c.weight->ne[1];
  c.in_ = c.unfolded ? unfolded[1] : c.weight->ne[2];
  c.out_ = c.unfolded ? unfolded[0] : c.weight->ne[3];
  c.kernel_ = kw;
  if (kw != kh || kw % 2 == 0) {
    fail(ErrorCode::ModelCompatibility, "'" + prefix + ".weight' is not an odd square kernel");
  }
  if (w.has(prefix + ".bias")) {
    c.bias = w.require_f32(prefix + ".bias", 1);
    expect_dim("'" + prefix + ".bias' length", c.bias->ne[0], c.out_channels());
  }
  return c;
}

namespace {

// Tensors one band of a split convolution makes (see conv2d).
constexpr int kTensorsPerBand = 9;

// What ggml_im2col takes from a kernel: its sizes (it reads nothing else of its first operand).
// An unfolded kernel has lost them, so a small kernel-shaped tensor stands in (f16 KW·KH·IC
// elements, never read).
ggml_tensor* kernel_sizes(ggml_context* ctx, const Conv2d& conv) {
  if (!conv.unfolded) return conv.weight;
  return ggml_new_tensor_4d(ctx, GGML_TYPE_F16, conv.kernel(), conv.kernel(), conv.in_channels(), 1);
}

// The unfolded input cols [KW·KH·IC, OW, R, N] times the kernel:
//  - a float kernel [KW, KH, IC, OC]: ggml_mul_mat(cols, kernel) -> [OW, R, N, OC]; the columns
//    take the kernel's float type;
//  - an unfolded (quantized) kernel [KW·KH·IC, OC]: ggml_mul_mat(kernel, cols) -> [OC, OW, R, N];
//    a block type can only be mul_mat's first operand, and the columns are f32.
ggml_tensor* unfolded_product(ggml_context* ctx, ggml_tensor* cols, const Conv2d& conv) {
  ggml_tensor* w = conv.weight;
  ggml_tensor* flat = ggml_reshape_2d(ctx, cols, cols->ne[0], cols->ne[1] * cols->ne[2] * cols->ne[3]);
  if (conv.unfolded) {
    ggml_tensor* y = ggml_mul_mat(ctx, w, flat);  // [OC, OW·R·N]
    return ggml_reshape_4d(ctx, y, w->ne[1], cols->ne[1], cols->ne[2], cols->ne[3]);
  }
  ggml_tensor* y = ggml_mul_mat(ctx, flat, ggml_reshape_2d(ctx, w, w->ne[0] * w->ne[1] * w->ne[2], w->ne[3]));  // [OW·R·N, OC]
  return ggml_reshape_4d(ctx, y, cols->ne[1], cols->ne[2], cols->ne[3], w->ne[3]);
}

// Output rows [r0, r1) of the convolution: the input rows they read (a view), zero rows where
// those fall outside the image, then the same unfolding and product as the whole op, without
// vertical padding. -> unfolded_product's layout with R = r1 - r0.
ggml_tensor* conv_rows(ggml_context* ctx, const Conv2d& conv, ggml_tensor* sizes, ggml_tensor* x, int pad,
                       ggml_type col_type, int64_t r0, int64_t r1) {
  const int stride = conv.stride;
  const int64_t kh = conv.kernel(), height = x->ne[1];
  const int64_t in0 = r0 * stride - pad, in1 = (r1 - 1) * stride - pad + kh;  // rows read, [in0, in1)
  const int64_t lo = std::max<int64_t>(in0, 0), hi = std::min<int64_t>(in1, height);
  ggml_tensor* band = ggml_view_4d(ctx, x, x->ne[0], hi - lo, x->ne[2], x->ne[3], x->nb[1], x->nb[2], x->nb[3],
                                   size_t(lo) * x->nb[1]);
  if (lo > in0 || hi < in1) {
    band = ggml_pad_ext(ctx, band, 0, 0, static_cast<int>(lo - in0), static_cast<int>(in1 - hi), 0, 0, 0, 0);
  }
  return unfolded_product(ctx, ggml_im2col(ctx, sizes, band, stride, stride, pad, 0, 1, 1, true, col_type), conv);
}

// Output rows [first, last) read only rows inside the image; the rows above and below them read
// the padding. {0, oh} when there is none (or the image is too small to have inner rows).
std::pair<int64_t, int64_t> edge_rows(int64_t height, int64_t k, int s, int pad, int64_t oh) {
  const int64_t first = (pad + s - 1) / s, last = (height + pad - k) / s + 1;
  return first < last && last <= oh ? std::pair<int64_t, int64_t>{first, last} : std::pair<int64_t, int64_t>{0, oh};
}

// Output row bands [r0, r1): `pieces` even bands of the rows inside the image, and the edge rows
// above and below them as bands of their own when the allowance has room for two more pieces.
// A band that reads outside the image pads a copy of its input rows (ggml_pad_ext, an element
// at a time): kept to those few rows, the copies were 12% of a VAE decode's time as a third of
// the image each.
std::vector<std::pair<int64_t, int64_t>> band_rows(ggml_context* ctx, int64_t oh, int pieces, std::pair<int64_t, int64_t> inner) {
  const int edges = (inner.first > 0) + (inner.second < oh);
  if (edges == 0 || inner.second - inner.first < pieces || !reserve_piece_tensors(ctx, size_t(edges) * kTensorsPerBand))
    inner = {0, oh};
  std::vector<std::pair<int64_t, int64_t>> bands;
  if (inner.first > 0) bands.emplace_back(0, inner.first);
  const int64_t n = inner.second - inner.first;
  for (int i = 0; i < pieces; ++i)
    bands.emplace_back(inner.first + piece_start(n, pieces, i), inner.first + piece_start(n, pieces, i + 1));
  if (inner.second < oh) bands.emplace_back(inner.second, oh);
  return bands;
}

}  // namespace

ggml_tensor* conv2d(ggml_context* ctx, const Conv2d& layer, ggml_tensor* x, int pad) {
  Conv2d conv = layer;
  if (conv.f32_columns && !conv.unfolded && conv.weight->type != GGML_TYPE_F32) {
    conv.weight = ggml_cast(ctx, conv.weight, GGML_TYPE_F32);  // a few MB, once per graph evaluation
    conv.input_scale = 1.0f;  // f32 columns do not overflow
  }
  if (conv.input_scale != 1.0f) x = ggml_scale(ctx, x, conv.input_scale);
  const ggml_type col_type = conv.unfolded || conv.weight->type == GGML_TYPE_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
  const int s = conv.stride;
  const int64_t k = conv.kernel(), ic = conv.in_channels(), oc = conv.out_channels();
  const int64_t ow = (x->ne[0] + 2 * pad - k) / s + 1, oh = (x->ne[1] + 2 * pad - k) / s + 1;
  ggml_tensor* sizes = kernel_sizes(ctx, conv);

  // A large convolution in bands of output rows (nn/op_split.h): each band unfolds and
  // multiplies only its own rows, so the numbers are the whole op's. Tensors per band: the
  // input view, its padding, the unfolding, three reshapes, the product, the write.
  const int64_t float_ne[4] = {ow, oh, x->ne[3], oc}, unfolded_ne[4] = {oc, ow, oh, x->ne[3]};
  PieceAssembler assembler(conv.unfolded ? unfolded_ne : float_ne, conv.unfolded ? 2 : 1);
  const double cols = double(ow) * double(oh) * double(x->ne[3]) * double(k * k * ic);
  const double work = std::max(cols * double(oc), cols * kIm2colElementWork);
  const int pieces = x->type == GGML_TYPE_F32 && ggml_is_contiguous(x) && assembler.fits()
                         ? plan_pieces(ctx, work, oh, kTensorsPerBand)
                         : 1;

  ggml_tensor* y;  // unfolded_product's layout for the whole output
  if (pieces == 1) {
    y = unfolded_product(ctx, ggml_im2col(ctx, sizes, x, s, s, pad, pad, 1, 1, true, col_type), conv);
  } else {
    for (const auto& [r0, r1] : band_rows(ctx, oh, pieces, edge_rows(x->ne[1], k, s, pad, oh))) {
      assembler.add(ctx, conv_rows(ctx, conv, sizes, x, pad, col_type, r0, r1));
    }
    y = assembler.result();
  }
  // -> [OW, OH, OC, N]
  y = ggml_cont(ctx, conv.unfolded ? ggml_permute(ctx, y, 2, 0, 1, 3) : ggml_permute(ctx, y, 0, 1, 3, 2));
  if (conv.input_scale != 1.0f) y = ggml_scale(ctx, y, 1.0f / conv.input_scale);
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
  l.adapters = w.adapters(prefix + ".weight");
  if (w.has(prefix + ".bias")) {
    l.bias = w.require_f32(prefix + ".bias", 1);
    expect_dim("'" + prefix + ".bias' length", l.bias->ne[0], l.out_features());
  }
  return l;
}

ggml_tensor* matrix_product(ggml_context* ctx, ggml_tensor* w, const std::vector<LowRankAdapter>* adapters, ggml_tensor* x) {
  ggml_tensor* y = ggml_mul_mat(ctx, w, x);
  if (adapters) {
    for (const LowRankAdapter& a : *adapters) {
      ggml_tensor* low = ggml_mul_mat(ctx, a.up, ggml_mul_mat(ctx, a.down, x));  // [OUT, ...]
      y = ggml_add(ctx, y, ggml_scale(ctx, low, a.scale));
    }
  }
  return y;
}

ggml_tensor* linear(ggml_context* ctx, const Linear& l, ggml_tensor* x) {
  ggml_tensor* y = matrix_product(ctx, l.weight, l.adapters, x);
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
