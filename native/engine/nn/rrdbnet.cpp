#include "nn/rrdbnet.h"

#include "core/error.h"

namespace sdn {

namespace {

// ESRGAN's constants (BasicSR's rrdbnet_arch): the dense blocks' and RRDBs' residual scale and
// the leaky ReLU slope. They are not in the weights.
constexpr float kResidualScale = 0.2f;
constexpr float kLeakySlope = 0.2f;
// Bounds on what a file may claim (the largest published models have 23 blocks, ×8 at most).
constexpr int kMaxBlocks = 256;
constexpr int kMaxUpsampleSteps = 4;

ggml_tensor* lrelu(ggml_context* ctx, ggml_tensor* x) { return ggml_leaky_relu(ctx, x, kLeakySlope, false); }

std::string index_name(const std::string& prefix, int i) { return prefix + std::to_string(i); }

// Loads a 3x3 (any odd square) conv and checks its input channels.
Conv2d conv_from(Weights& w, const std::string& name, int64_t in_channels) {
  Conv2d c = Conv2d::load(w, name);
  expect_dim("'" + name + "' input channels", c.in_channels(), in_channels);
  return c;
}

}  // namespace

DenseBlock DenseBlock::load(Weights& w, const std::string& prefix, int64_t features) {
  DenseBlock b;
  int64_t in = features;
  for (int m = 0; m < 5; ++m) {
    const std::string name = index_name(prefix + ".conv", m + 1);
    b.conv[m] = conv_from(w, name, in);
    if (m > 0) expect_dim("'" + name + "' input channels", b.conv[m].in_channels(), features + m * b.growth());
    in += b.conv[m].out_channels();
  }
  expect_dim("'" + prefix + ".conv5' output channels", b.conv[4].out_channels(), features);
  return b;
}

Rrdb Rrdb::load(Weights& w, const std::string& prefix, int64_t features) {
  Rrdb r;
  for (int k = 0; k < 3; ++k) r.rdb[k] = DenseBlock::load(w, index_name(prefix + ".rdb", k + 1), features);
  return r;
}

RrdbNet RrdbNet::load(Weights& w) {
  RrdbNet net;
  net.conv_first_ = Conv2d::load(w, "conv_first");
  // The input is RGB, unshuffled by 1, 2 or 4: 3, 12 or 48 channels.
  const int64_t in = net.conv_first_.in_channels();
  net.unshuffle_ = in == 3 ? 1 : in == 12 ? 2 : in == 48 ? 4 : 0;
  if (!net.unshuffle_) {
    fail(ErrorCode::ModelCompatibility, "'conv_first' takes " + std::to_string(in) +
                                            " channels: an RGB RRDBNet takes 3 (or 12, 48 after pixel unshuffle)");
  }
  const int64_t features = net.features();
  while (w.has("body." + std::to_string(net.trunk_.size()) + ".rdb1.conv1.weight")) {
    if (net.trunk_.size() >= kMaxBlocks) fail(ErrorCode::ModelCompatibility, "more than 256 RRDB blocks");
    net.trunk_.push_back(Rrdb::load(w, "body." + std::to_string(net.trunk_.size()), features));
  }
  if (net.trunk_.empty()) fail(ErrorCode::ModelCompatibility, "missing tensor 'body.0.rdb1.conv1.weight' (no RRDB trunk)");
  net.conv_body_ = conv_from(w, "conv_body", features);
  expect_dim("'conv_body' output channels", net.conv_body_.out_channels(), features);
  while (w.has(index_name("conv_up", static_cast<int>(net.upsample_.size()) + 1) + ".weight")) {
    if (net.upsample_.size() >= kMaxUpsampleSteps) fail(ErrorCode::ModelCompatibility, "more than 4 upsampling convs");
    const std::string name = index_name("conv_up", static_cast<int>(net.upsample_.size()) + 1);
    net.upsample_.push_back(conv_from(w, name, features));
    expect_dim("'" + name + "' output channels", net.upsample_.back().out_channels(), features);
  }
  net.conv_hr_ = conv_from(w, "conv_hr", features);
  net.conv_last_ = conv_from(w, "conv_last", net.conv_hr_.out_channels());
  expect_dim("'conv_last' output channels (RGB)", net.conv_last_.out_channels(), 3);
  if (net.cell_scale() < net.unshuffle_) {
    fail(ErrorCode::ModelCompatibility, "the network upsamples ×" + std::to_string(net.cell_scale()) +
                                            " after folding " + std::to_string(net.unshuffle_) + " pixels a side: it would shrink");
  }
  return net;
}

double RrdbNet::reach() const {
  const auto radius = [](const Conv2d& c) { return double(c.kernel() / 2); };
  double r = radius(conv_first_) + radius(conv_body_);
  for (const Rrdb& b : trunk_) {
    for (const DenseBlock& d : b.rdb) {
      for (const Conv2d& c : d.conv) r += radius(c);
    }
  }
  double per_cell = 1;  // output units per input cell where a conv runs
  for (const Conv2d& c : upsample_) {
    per_cell *= 2;
    r += (radius(c) + 1) / per_cell;  // + the nearest upsample's rounding
  }
  return r + (radius(conv_hr_) + radius(conv_last_)) / per_cell;
}

size_t RrdbNet::graph_nodes() const {
  // A conv is about ten nodes (unfold, reshapes, product, permute, bias); the dense blocks add
  // a concat and an activation per conv.
  const size_t convs = 4 + upsample_.size() + trunk_.size() * 15;
  return convs * 16 + trunk_.size() * 8 + 256;
}

namespace {

ggml_tensor* dense_block(ggml_context* ctx, const DenseBlock& b, ggml_tensor* x) {
  ggml_tensor* inputs = x;  // the block input and every conv output so far, along channels
  for (int m = 0; m < 4; ++m) {
    ggml_tensor* grown = lrelu(ctx, conv2d(ctx, b.conv[m], inputs));
    inputs = ggml_concat(ctx, inputs, grown, 2);
  }
  ggml_tensor* residual = conv2d(ctx, b.conv[4], inputs);
  return ggml_add(ctx, ggml_scale(ctx, residual, kResidualScale), x);
}

ggml_tensor* rrdb(ggml_context* ctx, const Rrdb& r, ggml_tensor* x) {
  ggml_tensor* h = x;
  for (const DenseBlock& d : r.rdb) h = dense_block(ctx, d, h);
  return ggml_add(ctx, ggml_scale(ctx, h, kResidualScale), x);
}

}  // namespace

ggml_tensor* RrdbNet::build(ggml_context* ctx, ggml_tensor* x) const {
  ggml_tensor* features = conv2d(ctx, conv_first_, x);
  ggml_set_name(features, "esrgan.features");
  ggml_tensor* trunk = features;
  for (size_t i = 0; i < trunk_.size(); ++i) {
    trunk = rrdb(ctx, trunk_[i], trunk);
    ggml_format_name(trunk, "esrgan.body.%zu", i);
  }
  ggml_tensor* h = ggml_add(ctx, features, conv2d(ctx, conv_body_, trunk));
  for (const Conv2d& up : upsample_) h = lrelu(ctx, conv2d(ctx, up, upsample_nearest2x(ctx, h)));
  h = conv2d(ctx, conv_last_, lrelu(ctx, conv2d(ctx, conv_hr_, h)));
  ggml_set_name(h, "esrgan.out");
  return h;
}

}  // namespace sdn
