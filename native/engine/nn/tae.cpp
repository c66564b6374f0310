#include "nn/tae.h"

#include <set>

#include "core/error.h"

namespace sdn {

namespace {

// TAESD's Block pool branch: GroupNorm over 4 groups, PyTorch's default eps.
constexpr int kPoolGroups = 4;
constexpr float kPoolEps = 1e-5f;

std::string key(int index) { return std::to_string(index); }

// Top-level nn.Sequential indices present in the checkpoint, ascending.
std::set<int> sequential_indices(const TensorStore& store) {
  std::set<int> out;
  for (const TensorInfo& t : store.tensors()) {
    size_t dot = t.name.find('.');
    std::string head = t.name.substr(0, dot);
    if (head.empty() || head.size() > 4 || head.find_first_not_of("0123456789") != std::string::npos) {
      fail(ErrorCode::ModelCompatibility, "not a TAE checkpoint: unexpected tensor '" + t.name + "'");
    }
    out.insert(std::stoi(head));
  }
  if (out.empty()) fail(ErrorCode::ModelCompatibility, "not a TAE checkpoint: it holds no tensors");
  return out;
}

}  // namespace

TaeBlock TaeBlock::load(Weights& w, const std::string& prefix, int64_t in_channels) {
  TaeBlock b;
  if (w.has(prefix + ".pool.0.weight")) {
    b.has_pool = true;
    b.pool_expand = Conv2d::load(w, prefix + ".pool.0");
    expect_dim("'" + prefix + ".pool.0' input channels", b.pool_expand.in_channels(), in_channels);
    b.pool_norm = GroupNorm::load(w, prefix + ".pool.1", kPoolGroups, kPoolEps);
    expect_dim("'" + prefix + ".pool.1' channels", b.pool_norm.channels(), b.pool_expand.out_channels());
    b.pool_project = Conv2d::load(w, prefix + ".pool.3");
    expect_dim("'" + prefix + ".pool.3' input channels", b.pool_project.in_channels(), b.pool_norm.channels());
    expect_dim("'" + prefix + ".pool.3' output channels", b.pool_project.out_channels(), in_channels);
  }
  int64_t c = in_channels;
  for (int i = 0; i < 3; ++i) {
    std::string name = prefix + ".conv." + std::to_string(2 * i);
    b.conv[i] = Conv2d::load(w, name);
    expect_dim("'" + name + "' input channels", b.conv[i].in_channels(), c);
    c = b.conv[i].out_channels();
  }
  if (w.has(prefix + ".skip.weight")) {
    b.skip = Conv2d::load(w, prefix + ".skip");
    expect_dim("'" + prefix + ".skip' input channels", b.skip.in_channels(), in_channels);
    expect_dim("'" + prefix + ".skip' output channels", b.skip.out_channels(), c);
  } else {
    expect_dim("'" + prefix + "' output channels (no skip conv)", c, in_channels);
  }
  return b;
}

ggml_tensor* tae_block(ggml_context* ctx, const TaeBlock& b, ggml_tensor* x) {
  if (b.has_pool) {
    ggml_tensor* p = conv2d(ctx, b.pool_expand, x);
    p = ggml_relu(ctx, group_norm(ctx, b.pool_norm, p));
    x = ggml_add(ctx, x, conv2d(ctx, b.pool_project, p));
  }
  ggml_tensor* h = ggml_relu(ctx, conv2d(ctx, b.conv[0], x));
  h = ggml_relu(ctx, conv2d(ctx, b.conv[1], h));
  h = conv2d(ctx, b.conv[2], h);
  ggml_tensor* skip = b.skip.weight ? conv2d(ctx, b.skip, x) : x;
  return ggml_relu(ctx, ggml_add(ctx, h, skip));
}

TaeNetwork TaeNetwork::load(Weights& w, const TensorStore& store, Role role) {
  TaeNetwork net;
  net.role_ = role;
  std::set<int> indices = sequential_indices(store);
  int last = *indices.rbegin();
  int64_t c = -1;
  for (int i : indices) {
    TaeLayer layer;
    if (w.has(key(i) + ".conv.0.weight")) {
      if (c < 0) fail(ErrorCode::ModelCompatibility, "TAE layer " + key(i) + ": a block before the first conv");
      layer.kind = TaeLayer::Block;
      layer.block = TaeBlock::load(w, key(i), c);
      c = layer.block.out_channels();
    } else if (w.has(key(i) + ".weight")) {
      // Bias-free 3x3 convs between blocks resample: stride 2 in the encoder, after a nearest
      // x2 upsample in the decoder (TAESD's Encoder/Decoder definitions).
      bool resample = c >= 0 && i != last && !w.has(key(i) + ".bias");
      layer.kind = !resample ? TaeLayer::Conv : role == Encoder ? TaeLayer::Downsample : TaeLayer::Upsample;
      layer.conv = Conv2d::load(w, key(i), layer.kind == TaeLayer::Downsample ? 2 : 1);
      if (c < 0) {
        net.in_channels_ = layer.conv.in_channels();
      } else {
        expect_dim("TAE layer " + key(i) + " input channels", layer.conv.in_channels(), c);
      }
      c = layer.conv.out_channels();
      if (layer.kind == TaeLayer::Downsample || layer.kind == TaeLayer::Upsample) net.scale_ *= 2;
    } else {
      fail(ErrorCode::ModelCompatibility, "TAE layer " + key(i) + " is neither a conv nor a block");
    }
    net.layers_.push_back(layer);
  }
  if (net.layers_.front().kind != TaeLayer::Conv || net.layers_.back().kind != TaeLayer::Conv || net.layers_.size() < 2) {
    fail(ErrorCode::ModelCompatibility, "not a TAE network: it must start and end with a conv");
  }
  net.out_channels_ = c;
  if (role == Encoder) expect_dim("TAE encoder input channels (RGB)", net.in_channels_, 3);
  if (role == Decoder) expect_dim("TAE decoder output channels (RGB)", net.out_channels_, 3);
  return net;
}

ggml_tensor* TaeNetwork::build(ggml_context* ctx, ggml_tensor* x) const {
  if (role_ == Decoder) {
    // Clamp(): tanh(x / 3) * 3 keeps latents in the range the decoder was trained on.
    x = ggml_scale(ctx, ggml_tanh(ctx, ggml_scale(ctx, x, 1.0f / 3.0f)), 3.0f);
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    const TaeLayer& layer = layers_[i];
    switch (layer.kind) {
      case TaeLayer::Block: x = tae_block(ctx, layer.block, x); break;
      case TaeLayer::Upsample: x = conv2d(ctx, layer.conv, upsample_nearest2x(ctx, x)); break;
      case TaeLayer::Downsample:
      case TaeLayer::Conv: x = conv2d(ctx, layer.conv, x); break;
    }
    // The decoder's input conv is followed by a ReLU; no other bare conv is.
    if (role_ == Decoder && i == 0) x = ggml_relu(ctx, x);
    ggml_format_name(x, "tae.%s.%zu", role_ == Encoder ? "enc" : "dec", i);
  }
  return x;
}

}  // namespace sdn
