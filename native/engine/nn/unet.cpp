#include "nn/unet.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sdn {

namespace {

constexpr int kGroups = 32;
constexpr float kResNormEps = 1e-5f;          // openaimodel.normalization: GroupNorm32(32, C)
constexpr float kTransformerNormEps = 1e-6f;  // attention.Normalize: GroupNorm(32, C, eps=1e-6)
constexpr float kLayerNormEps = 1e-5f;        // nn.LayerNorm's default
constexpr double kMaxPeriod = 10000.0;
// Refused before any buffer is asked for: the widest activation, in elements.
constexpr double kMaxActivationElements = 2.0e9;
constexpr int64_t kMaxSide = 16384;

std::string at(const std::string& prefix, int i) { return prefix + "." + std::to_string(i); }

void expect_linear(const std::string& name, const Linear& l, int64_t in, int64_t out) {
  expect_dim("'" + name + ".weight' input width", l.in_features(), in);
  if (out > 0) expect_dim("'" + name + ".weight' output width", l.out_features(), out);
}

// proj_in / proj_out: a 1×1 conv [D, C, 1, 1] (SD1.x) or a linear [D, C] (SD2.x), used on
// tokens as a linear. A conv's weight stays 4-D ([1, 1, C, D] in ne order); project() views it
// as [C, D].
struct Projection {
  Linear l;
  int64_t in = 0, out = 0;

  static Projection load(WeightLookup& w, const std::string& name) {
    const std::string key = name + ".weight";
    if (!w.has(key)) fail(ErrorCode::ModelCompatibility, "the model has no '" + key + "'");
    Projection p;
    ggml_tensor* weight = nullptr;
    try {
      weight = w.require(key, 4);
    } catch (const Error&) {
      weight = w.require(key, 2);  // throws, naming the rank, when it is neither
    }
    if (ggml_n_dims(weight) > 2 && (weight->ne[0] != 1 || weight->ne[1] != 1)) {
      fail(ErrorCode::ModelCompatibility, "'" + key + "' is a conv kernel wider than 1×1");
    }
    p.l.weight = weight;
    p.l.adapters = w.adapters(key);
    p.in = ggml_n_dims(weight) > 2 ? weight->ne[2] : weight->ne[0];
    p.out = ggml_n_dims(weight) > 2 ? weight->ne[3] : weight->ne[1];
    if (w.has(name + ".bias")) {
      p.l.bias = w.require_f32(name + ".bias", 1);
      expect_dim("'" + name + ".bias' length", p.l.bias->ne[0], p.out);
    }
    return p;
  }
};

ggml_tensor* project(ggml_context* ctx, const Linear& l, int64_t in, int64_t out, ggml_tensor* x) {
  ggml_tensor* w = ggml_n_dims(l.weight) > 2 ? ggml_reshape_2d(ctx, l.weight, in, out) : l.weight;  // [C, D]
  ggml_tensor* y = matrix_product(ctx, w, l.adapters, x);
  return l.bias ? ggml_add(ctx, y, l.bias) : y;
}

// x [D, T, B], context [Dc, M, B] -> [D, T, B]
ggml_tensor* transformer_block(ggml_context* ctx, const TransformerBlock& b, ggml_tensor* x, ggml_tensor* context,
                               int heads, const AttentionOptions& attention) {
  // Self-attention.
  ggml_tensor* n = layer_norm(ctx, b.norm1, x);
  ggml_tensor* a = multihead_attention(ctx, linear(ctx, b.q1, n), linear(ctx, b.k1, n), linear(ctx, b.v1, n), heads,
                                       false, attention);
  x = ggml_add(ctx, x, linear(ctx, b.out1, a));
  // Cross-attention on the text context.
  n = layer_norm(ctx, b.norm2, x);
  a = multihead_attention(ctx, linear(ctx, b.q2, n), linear(ctx, b.k2, context), linear(ctx, b.v2, context), heads,
                          false, attention);
  x = ggml_add(ctx, x, linear(ctx, b.out2, a));
  // GEGLU feed-forward: value · GELU(gate), the gate being the second half.
  n = layer_norm(ctx, b.norm3, x);
  ggml_tensor* f = linear(ctx, b.ff_in, n);  // [2F, T, B]
  f = ggml_geglu_erf_swapped(ctx, f);        // [F, T, B]
  return ggml_add(ctx, x, linear(ctx, b.ff_out, f));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Weights

ResBlock ResBlock::load(WeightLookup& w, const std::string& p, int64_t time_dim) {
  ResBlock b;
  b.in_norm = GroupNorm::load(w, p + ".in_layers.0", kGroups, kResNormEps);
  b.in_conv = Conv2d::load(w, p + ".in_layers.2");
  b.emb = Linear::load(w, p + ".emb_layers.1");
  b.out_norm = GroupNorm::load(w, p + ".out_layers.0", kGroups, kResNormEps);
  b.out_conv = Conv2d::load(w, p + ".out_layers.3");
  const int64_t cin = b.in_norm.channels(), cout = b.in_conv.out_channels();
  expect_dim("'" + p + ".in_layers.2.weight' input channels", b.in_conv.in_channels(), cin);
  expect_linear(p + ".emb_layers.1", b.emb, time_dim, cout);
  expect_dim("'" + p + ".out_layers.0' channels", b.out_norm.channels(), cout);
  expect_dim("'" + p + ".out_layers.3.weight' input channels", b.out_conv.in_channels(), cout);
  expect_dim("'" + p + ".out_layers.3.weight' output channels", b.out_conv.out_channels(), cout);
  if (w.has(p + ".skip_connection.weight")) {
    b.skip = Conv2d::load(w, p + ".skip_connection");
    expect_dim("'" + p + ".skip_connection.weight' input channels", b.skip.in_channels(), cin);
    expect_dim("'" + p + ".skip_connection.weight' output channels", b.skip.out_channels(), cout);
  } else if (cin != cout) {
    fail(ErrorCode::ModelCompatibility, "'" + p + "' changes channels but has no skip_connection");
  }
  return b;
}

TransformerBlock TransformerBlock::load(WeightLookup& w, const std::string& p, int64_t dim) {
  TransformerBlock b;
  b.norm1 = LayerNorm::load(w, p + ".norm1", kLayerNormEps);
  b.norm2 = LayerNorm::load(w, p + ".norm2", kLayerNormEps);
  b.norm3 = LayerNorm::load(w, p + ".norm3", kLayerNormEps);
  expect_dim("'" + p + ".norm1.weight' length", b.norm1.weight->ne[0], dim);
  expect_dim("'" + p + ".norm2.weight' length", b.norm2.weight->ne[0], dim);
  expect_dim("'" + p + ".norm3.weight' length", b.norm3.weight->ne[0], dim);
  b.q1 = Linear::load(w, p + ".attn1.to_q");
  b.k1 = Linear::load(w, p + ".attn1.to_k");
  b.v1 = Linear::load(w, p + ".attn1.to_v");
  b.out1 = Linear::load(w, p + ".attn1.to_out.0");
  b.q2 = Linear::load(w, p + ".attn2.to_q");
  b.k2 = Linear::load(w, p + ".attn2.to_k");
  b.v2 = Linear::load(w, p + ".attn2.to_v");
  b.out2 = Linear::load(w, p + ".attn2.to_out.0");
  b.ff_in = Linear::load(w, p + ".ff.net.0.proj");
  b.ff_out = Linear::load(w, p + ".ff.net.2");
  expect_linear(p + ".attn1.to_q", b.q1, dim, dim);
  expect_linear(p + ".attn1.to_k", b.k1, dim, dim);
  expect_linear(p + ".attn1.to_v", b.v1, dim, dim);
  expect_linear(p + ".attn1.to_out.0", b.out1, dim, dim);
  expect_linear(p + ".attn2.to_q", b.q2, dim, dim);
  const int64_t context = b.k2.in_features();
  expect_linear(p + ".attn2.to_k", b.k2, context, dim);
  expect_linear(p + ".attn2.to_v", b.v2, context, dim);
  expect_linear(p + ".attn2.to_out.0", b.out2, dim, dim);
  const int64_t ff2 = b.ff_in.out_features();
  if (ff2 % 2 != 0) fail(ErrorCode::ModelCompatibility, "'" + p + ".ff.net.0.proj.weight' has an odd output width");
  expect_linear(p + ".ff.net.0.proj", b.ff_in, dim, ff2);
  expect_linear(p + ".ff.net.2", b.ff_out, ff2 / 2, dim);
  return b;
}

SpatialTransformer SpatialTransformer::load(WeightLookup& w, const std::string& p) {
  SpatialTransformer st;
  st.norm = GroupNorm::load(w, p + ".norm", kGroups, kTransformerNormEps);
  Projection in = Projection::load(w, p + ".proj_in");
  Projection out = Projection::load(w, p + ".proj_out");
  const int64_t c = st.norm.channels(), d = in.out;
  expect_dim("'" + p + ".proj_in.weight' input width", in.in, c);
  expect_dim("'" + p + ".proj_out.weight' input width", out.in, d);
  expect_dim("'" + p + ".proj_out.weight' output width", out.out, c);
  st.proj_in = in.l;
  st.proj_out = out.l;
  st.inner = d;
  for (int k = 0; w.has(at(p + ".transformer_blocks", k) + ".norm1.weight"); ++k) {
    st.blocks.push_back(TransformerBlock::load(w, at(p + ".transformer_blocks", k), d));
    expect_dim("'" + at(p + ".transformer_blocks", k) + ".attn2.to_k.weight' input width", st.blocks.back().k2.in_features(),
               st.blocks.front().k2.in_features());
  }
  if (st.blocks.empty()) fail(ErrorCode::ModelCompatibility, "'" + p + "' has no transformer_blocks");
  return st;
}

namespace {

void expect_channels(const std::string& what, int64_t got, const UnetTrace& t) {
  expect_dim(what + " input channels", got, t.channels);
}

}  // namespace

UnetBlock load_unet_block(WeightLookup& w, const std::string& root, const std::string& name, int64_t time_dim, UnetTrace& t) {
  UnetBlock block;
  block.name = name;
  const std::string prefix = root + name;
  for (int j = 0;; ++j) {
    const std::string p = at(prefix, j);
    UnetLayer layer;
    if (w.has(p + ".in_layers.0.weight")) {
      layer.kind = UnetLayer::Res;
      layer.res = ResBlock::load(w, p, time_dim);
      expect_channels("'" + p + "'", layer.res.in_channels(), t);
      t.channels = layer.res.out_channels();
    } else if (w.has(p + ".proj_in.weight")) {
      layer.kind = UnetLayer::Transformer;
      layer.transformer = SpatialTransformer::load(w, p);
      expect_channels("'" + p + "'", layer.transformer.channels(), t);
    } else if (w.has(p + ".op.weight")) {
      layer.kind = UnetLayer::Downsample;
      layer.conv = Conv2d::load(w, p + ".op", 2);
      expect_channels("'" + p + ".op'", layer.conv.in_channels(), t);
      t.channels = layer.conv.out_channels();
      t.max_level = std::max(t.max_level, ++t.level);
    } else if (w.has(p + ".conv.weight")) {
      layer.kind = UnetLayer::Upsample;
      layer.conv = Conv2d::load(w, p + ".conv");
      expect_channels("'" + p + ".conv'", layer.conv.in_channels(), t);
      t.channels = layer.conv.out_channels();
      if (--t.level < 0) fail(ErrorCode::ModelCompatibility, "'" + p + "' upsamples above the input resolution");
    } else if (w.has(p + ".weight")) {
      layer.kind = UnetLayer::Conv;
      layer.conv = Conv2d::load(w, p);
      expect_channels("'" + p + "'", layer.conv.in_channels(), t);
      t.channels = layer.conv.out_channels();
    } else {
      break;
    }
    block.layers.push_back(std::move(layer));
  }
  return block;
}

bool unet_block_exists(WeightLookup& w, const std::string& p) {
  return w.has(p + ".0.weight") || w.has(p + ".0.in_layers.0.weight") || w.has(p + ".0.op.weight") ||
         w.has(p + ".0.proj_in.weight") || w.has(p + ".0.conv.weight");
}

int64_t UnetNetwork::input_channels(WeightLookup& w, const std::string& prefix) {
  return Conv2d::load(w, prefix + "input_blocks.0.0").in_channels();
}

UnetEncoder UnetEncoder::load(WeightLookup& w, const std::string& prefix) {
  UnetEncoder e;
  e.time_embed_in_ = Linear::load(w, prefix + "time_embed.0");
  e.time_embed_out_ = Linear::load(w, prefix + "time_embed.2");
  const int64_t time_dim = e.time_dim();
  expect_linear(prefix + "time_embed.2", e.time_embed_out_, time_dim, time_dim);
  // SDXL's vector conditioning (sgm num_classes "sequential"): Linear, SiLU, Linear into the time embedding.
  if (w.has(prefix + "label_emb.0.0.weight")) {
    e.label_emb_in_ = Linear::load(w, prefix + "label_emb.0.0");
    e.label_emb_out_ = Linear::load(w, prefix + "label_emb.0.2");
    expect_dim("output width of '" + prefix + "label_emb.0.0.weight'", e.label_emb_in_.out_features(), time_dim);
    expect_linear(prefix + "label_emb.0.2", e.label_emb_out_, time_dim, time_dim);
  }

  // The stem: input_blocks.0.0, a 3×3 conv from the latent (+ mask) channels.
  if (!w.has(prefix + "input_blocks.0.0.weight")) {
    fail(ErrorCode::ModelCompatibility, "the model has no '" + prefix + "input_blocks.0.0.weight'");
  }
  UnetTrace& t = e.trace_;
  {
    UnetBlock stem;
    stem.name = "input_blocks.0";
    UnetLayer conv;
    conv.conv = Conv2d::load(w, prefix + "input_blocks.0.0");
    e.in_channels_ = conv.conv.in_channels();
    t.channels = conv.conv.out_channels();
    stem.layers.push_back(conv);
    e.input_blocks_.push_back(std::move(stem));
  }
  e.skips_.push_back({t.channels, 0});
  for (int i = 1; unet_block_exists(w, prefix + "input_blocks." + std::to_string(i)); ++i) {
    e.input_blocks_.push_back(load_unet_block(w, prefix, "input_blocks." + std::to_string(i), time_dim, t));
    e.skips_.push_back({t.channels, t.level});
  }
  e.middle_ = load_unet_block(w, prefix, "middle_block", time_dim, t);
  if (e.middle_.layers.empty()) fail(ErrorCode::ModelCompatibility, "the model has no '" + prefix + "middle_block'");
  return e;
}

UnetNetwork UnetNetwork::load(WeightLookup& w, const std::string& prefix) {
  UnetNetwork net;
  net.encoder_ = UnetEncoder::load(w, prefix);
  const int64_t time_dim = net.encoder_.time_dim();
  UnetTrace t = net.encoder_.trace();
  std::vector<UnetEncoder::Skip> skips = net.encoder_.skips();
  for (int i = 0; unet_block_exists(w, prefix + "output_blocks." + std::to_string(i)); ++i) {
    const std::string p = prefix + "output_blocks." + std::to_string(i);
    if (skips.empty()) fail(ErrorCode::ModelCompatibility, "'" + p + "' has no input block to take its skip from");
    const UnetEncoder::Skip skip = skips.back();
    skips.pop_back();
    if (skip.level != t.level) {
      fail(ErrorCode::ModelCompatibility, "'" + p + "' joins activations of different resolutions");
    }
    if (!w.has(p + ".0.in_layers.0.weight")) fail(ErrorCode::ModelCompatibility, "'" + p + ".0' is not a ResBlock");
    t.channels += skip.channels;  // concat(h, skip)
    net.output_blocks_.push_back(load_unet_block(w, prefix, "output_blocks." + std::to_string(i), time_dim, t));
  }
  if (!skips.empty()) {
    fail(ErrorCode::ModelCompatibility, "the model has " + std::to_string(net.encoder_.input_blocks().size()) +
                                            " input blocks but " + std::to_string(net.output_blocks_.size()) +
                                            " output blocks");
  }
  if (t.level != 0) fail(ErrorCode::ModelCompatibility, "the UNet's output is not at the input resolution");
  net.downsamplings_ = t.max_level;

  net.out_norm_ = GroupNorm::load(w, prefix + "out.0", kGroups, kResNormEps);
  net.out_conv_ = Conv2d::load(w, prefix + "out.2");
  expect_channels("'" + prefix + "out.0'", net.out_norm_.channels(), t);
  expect_channels("'" + prefix + "out.2'", net.out_conv_.in_channels(), t);

  // The context width, the same for every cross-attention.
  for (const UnetBlock& b : net.encoder_.input_blocks()) visit_unet_block_widths(b, net.context_dim_, net.max_channels_);
  visit_unet_block_widths(net.encoder_.middle(), net.context_dim_, net.max_channels_);
  for (const UnetBlock& b : net.output_blocks_) visit_unet_block_widths(b, net.context_dim_, net.max_channels_);
  if (net.context_dim_ == 0) {
    fail(ErrorCode::ModelCompatibility, "the UNet has no spatial transformer: it is not text-conditioned");
  }
  return net;
}

void visit_unet_block_widths(const UnetBlock& b, int64_t& context_dim, int64_t& max_channels) {
  for (const UnetLayer& l : b.layers) {
    if (l.kind == UnetLayer::Res) max_channels = std::max({max_channels, l.res.in_channels(), l.res.out_channels()});
    if (l.kind != UnetLayer::Transformer) continue;
    max_channels = std::max(max_channels, l.transformer.channels());
    if (context_dim == 0) context_dim = l.transformer.context_dim();
    expect_dim("'" + b.name + "' context width", l.transformer.context_dim(), context_dim);
  }
}

size_t unet_block_nodes(const UnetBlock& b) {
  size_t n = 8;
  for (const UnetLayer& l : b.layers) {
    n += l.kind == UnetLayer::Res ? 32 : l.kind == UnetLayer::Transformer ? 32 + 96 * l.transformer.blocks.size() : 12;
  }
  return n;
}

void check_unet_block_heads(const UnetBlock& b, int heads, int head_dim) {
  for (const UnetLayer& l : b.layers) {
    if (l.kind != UnetLayer::Transformer) continue;
    const int64_t d = l.transformer.inner_dim();
    const int64_t by = heads > 0 ? heads : head_dim;
    if (d % by != 0) {
      // The heads come from the file's metadata or its family's defaults: a mismatch is the model's.
      fail(ErrorCode::ModelCompatibility, "'" + b.name + "' is " + std::to_string(d) + " wide, not divisible by " +
                                              (heads > 0 ? "heads " : "headDim ") + std::to_string(by) +
                                              " (the sdnode.attention_heads metadata or the family's default)");
    }
  }
}

size_t UnetNetwork::graph_nodes_estimate() const {
  size_t n = 64;
  for (const UnetBlock& b : encoder_.input_blocks()) n += unet_block_nodes(b);
  n += unet_block_nodes(encoder_.middle());
  for (const UnetBlock& b : output_blocks_) n += unet_block_nodes(b);
  return n;
}

void UnetNetwork::check_heads(int heads, int head_dim) const {
  if ((heads > 0) == (head_dim > 0) || heads < 0 || head_dim < 0) {
    fail(ErrorCode::InvalidArgument, "the UNet needs exactly one of heads and headDim (a positive integer)");
  }
  for (const UnetBlock& b : encoder_.input_blocks()) check_unet_block_heads(b, heads, head_dim);
  check_unet_block_heads(encoder_.middle(), heads, head_dim);
  for (const UnetBlock& b : output_blocks_) check_unet_block_heads(b, heads, head_dim);
}

void UnetNetwork::check_shape(int64_t batch, int64_t channels, int64_t height, int64_t width,
                              int64_t context_tokens) const {
  if (batch < 1 || batch > 4096) fail(ErrorCode::InvalidArgument, "batch must be 1 to 4096");
  if (channels != in_channels()) {
    fail(ErrorCode::InvalidArgument, "the UNet takes " + std::to_string(in_channels()) + " input channels, not " +
                                         std::to_string(channels));
  }
  const int64_t m = side_multiple();
  for (int64_t side : {height, width}) {
    if (side <= 0 || side > kMaxSide || side % m != 0) {
      fail(ErrorCode::InvalidArgument, "latent sides must be positive multiples of " + std::to_string(m) +
                                           " (the UNet downsamples " + std::to_string(downsamplings_) +
                                           " times), not " + std::to_string(height) + "×" + std::to_string(width));
    }
  }
  if (context_tokens < 1 || context_tokens > 65536) fail(ErrorCode::InvalidArgument, "context tokens must be 1 to 65536");
  const double cells = double(batch) * double(height) * double(width);
  if (cells * double(max_channels_) * 2 > kMaxActivationElements ||
      double(batch) * double(context_tokens) * double(std::max(context_dim_, max_channels_)) > kMaxActivationElements) {
    fail(ErrorCode::Resource, "the latent is too large to run the UNet on at once");
  }
}

// ---------------------------------------------------------------------------------------------
// Graph builders

std::vector<float> sinusoidal_embedding(const std::vector<float>& timesteps, int64_t dim) {
  const int64_t half = dim / 2;
  std::vector<float> out(timesteps.size() * size_t(dim), 0.0f);
  for (size_t b = 0; b < timesteps.size(); ++b) {
    float* row = out.data() + b * size_t(dim);
    for (int64_t j = 0; j < half; ++j) {
      const double freq = std::exp(-std::log(kMaxPeriod) * double(j) / double(half));
      const double arg = double(timesteps[b]) * freq;
      row[j] = static_cast<float>(std::cos(arg));
      row[j + half] = static_cast<float>(std::sin(arg));
    }
  }
  return out;
}

ggml_tensor* timestep_embedding(ggml_context* ctx, const Linear& in, const Linear& out, ggml_tensor* t_freq) {
  return linear(ctx, out, ggml_silu(ctx, linear(ctx, in, t_freq)));  // [T, B]
}

ggml_tensor* resblock(ggml_context* ctx, const ResBlock& b, ggml_tensor* x, ggml_tensor* emb_silu) {
  const int64_t cout = b.out_channels(), batch = x->ne[3];
  ggml_tensor* h = conv2d(ctx, b.in_conv, ggml_silu(ctx, group_norm(ctx, b.in_norm, x)));  // [W, H, Co, B]
  ggml_tensor* e = linear(ctx, b.emb, emb_silu);                                          // [Co, B]
  h = ggml_add(ctx, h, ggml_reshape_4d(ctx, e, 1, 1, cout, batch));                       // per-channel bias
  h = conv2d(ctx, b.out_conv, ggml_silu(ctx, group_norm(ctx, b.out_norm, h)));            // [W, H, Co, B]
  return ggml_add(ctx, b.skip.weight ? conv2d(ctx, b.skip, x) : x, h);
}

ggml_tensor* spatial_transformer(ggml_context* ctx, const SpatialTransformer& st, ggml_tensor* x,
                                 ggml_tensor* context, int heads, const AttentionOptions& attention) {
  const int64_t w = x->ne[0], h = x->ne[1], c = x->ne[2], b = x->ne[3], d = st.inner_dim();
  ggml_tensor* t = group_norm(ctx, st.norm, x);                   // [W, H, C, B]
  t = ggml_cont(ctx, ggml_permute(ctx, t, 1, 2, 0, 3));           // [C, W, H, B]
  t = ggml_reshape_3d(ctx, t, c, w * h, b);                       // [C, T, B], token = y·W + x
  t = project(ctx, st.proj_in, c, d, t);                          // [D, T, B]
  for (const TransformerBlock& blk : st.blocks) t = transformer_block(ctx, blk, t, context, heads, attention);
  t = project(ctx, st.proj_out, d, c, t);                         // [C, T, B]
  t = ggml_reshape_4d(ctx, t, c, w, h, b);                        // [C, W, H, B]
  t = ggml_cont(ctx, ggml_permute(ctx, t, 2, 0, 1, 3));           // [W, H, C, B]
  return ggml_add(ctx, x, t);
}

ggml_tensor* downsample(ggml_context* ctx, const Conv2d& op, ggml_tensor* x) { return conv2d(ctx, op, x); }

ggml_tensor* upsample(ggml_context* ctx, const Conv2d& c, ggml_tensor* x) {
  return conv2d(ctx, c, upsample_nearest2x(ctx, x));
}

ggml_tensor* UnetEncoder::embed(ggml_context* ctx, ggml_tensor* t_freq, ggml_tensor* y, const char* net) const {
  ggml_tensor* emb = timestep_embedding(ctx, time_embed_in_, time_embed_out_, t_freq);  // [T, B]
  ggml_format_name(emb, "%s.time_embed", net);
  if (adm_channels() > 0) {
    if (!y || y->ne[0] != adm_channels() || y->ne[1] != t_freq->ne[1])
      fail(ErrorCode::Internal, std::string(net) + " takes y [" + std::to_string(adm_channels()) + ", batch]");
    emb = ggml_add(ctx, emb, timestep_embedding(ctx, label_emb_in_, label_emb_out_, y));  // [T, B]
    ggml_format_name(emb, "%s.time_label_embed", net);
  }
  return ggml_silu(ctx, emb);
}

ggml_tensor* apply_unet_block(ggml_context* ctx, const UnetBlock& block, ggml_tensor* h, ggml_tensor* emb_silu,
                              ggml_tensor* context, int heads, int head_dim, const AttentionOptions& attention,
                              const char* net) {
  for (const UnetLayer& l : block.layers) {
    switch (l.kind) {
      case UnetLayer::Conv: h = conv2d(ctx, l.conv, h); break;
      case UnetLayer::Res: h = resblock(ctx, l.res, h, emb_silu); break;
      case UnetLayer::Transformer: {
        const int n = heads > 0 ? heads : static_cast<int>(l.transformer.inner_dim() / head_dim);
        h = spatial_transformer(ctx, l.transformer, h, context, n, attention);
        break;
      }
      case UnetLayer::Downsample: h = downsample(ctx, l.conv, h); break;
      case UnetLayer::Upsample: h = upsample(ctx, l.conv, h); break;
    }
  }
  ggml_format_name(h, "%s.%s", net, block.name.c_str());
  return h;
}

ggml_tensor* UnetNetwork::build(ggml_context* ctx, const UnetInputs& in, int heads, int head_dim,
                                const AttentionOptions& attention) const {
  if (in.x->ne[3] != in.t_freq->ne[1]) fail(ErrorCode::Internal, "the UNet's x and t_freq have different batches");
  ggml_tensor* emb_silu = encoder_.embed(ctx, in.t_freq, in.y, "unet");
  const auto apply = [&](const UnetBlock& block, ggml_tensor* h) {
    return apply_unet_block(ctx, block, h, emb_silu, in.context, heads, head_dim, attention, "unet");
  };

  const std::vector<UnetBlock>& input_blocks = encoder_.input_blocks();
  if (!in.skip_residuals.empty() && in.skip_residuals.size() != input_blocks.size())
    fail(ErrorCode::Internal, "skip residuals: one per input block (" + std::to_string(input_blocks.size()) + ")");
  std::vector<ggml_tensor*> skips;
  ggml_tensor* h = in.x;  // [W, H, Cin, B]
  for (size_t i = 0; i < input_blocks.size(); ++i) {
    h = apply(input_blocks[i], h);
    ggml_tensor* r = in.skip_residuals.empty() ? nullptr : in.skip_residuals[i];
    skips.push_back(r ? ggml_add(ctx, h, r) : h);
  }
  h = apply(encoder_.middle(), h);
  if (in.middle_residual) h = ggml_add(ctx, h, in.middle_residual);
  for (const UnetBlock& b : output_blocks_) {
    h = ggml_concat(ctx, h, skips.back(), 2);  // [W, H, C + Cskip, B]
    skips.pop_back();
    h = apply(b, h);
  }
  h = conv2d(ctx, out_conv_, ggml_silu(ctx, group_norm(ctx, out_norm_, h)));  // [W, H, Cout, B]
  ggml_format_name(h, "unet.out");
  return h;
}

}  // namespace sdn
