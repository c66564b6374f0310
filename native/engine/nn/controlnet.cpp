#include "nn/controlnet.h"

#include <algorithm>

#include "core/error.h"

namespace sdn {

namespace {

// The latent is the image at 1/8 of its sides (the VAE's factor): the hint must come down to it.
constexpr int kLatentDownscale = 8;

std::string num(int64_t v) { return std::to_string(v); }

// cldm's input_hint_block: convs at the even indices of an nn.Sequential, SiLU at the odd ones.
// Strides are not in the weights. In the ControlNet source the convs that widen the channels
// between the first and the last one (16→32, 32→96, 96→256) are the stride-2 ones; that rule
// is what is read here, and the total must bring the image to the latent's resolution.
HintEncoder load_hint(WeightLookup& w, const std::string& prefix) {
  HintEncoder h;
  for (int i = 0; w.has(prefix + "input_hint_block." + num(i) + ".weight"); i += 2) {
    h.convs.push_back(Conv2d::load(w, prefix + "input_hint_block." + num(i)));
  }
  if (h.convs.size() < 2) fail(ErrorCode::ModelCompatibility, "the ControlNet has no '" + prefix + "input_hint_block' (2 convs or more)");
  for (size_t i = 1; i < h.convs.size(); ++i) {
    Conv2d& c = h.convs[i];
    expect_dim("'" + prefix + "input_hint_block." + num(2 * i) + ".weight' input channels", c.in_channels(),
               h.convs[i - 1].out_channels());
    if (i + 1 < h.convs.size() && c.out_channels() != c.in_channels()) c.stride = 2;
  }
  if (h.downscale() != kLatentDownscale)
    fail(ErrorCode::ModelCompatibility, "the ControlNet's input_hint_block scales the image down " + num(h.downscale()) +
                                            " times, not " + num(kLatentDownscale) + " (the latent's factor)");
  return h;
}

Conv2d load_zero_conv(WeightLookup& w, const std::string& name, int64_t channels) {
  if (!w.has(name + ".weight")) fail(ErrorCode::ModelCompatibility, "the ControlNet has no '" + name + ".weight'");
  Conv2d c = Conv2d::load(w, name);
  if (c.kernel() != 1) fail(ErrorCode::ModelCompatibility, "'" + name + ".weight' is not a 1×1 conv");
  expect_dim("'" + name + ".weight' input channels", c.in_channels(), channels);
  expect_dim("'" + name + ".weight' output channels", c.out_channels(), channels);
  return c;
}

}  // namespace

int HintEncoder::downscale() const {
  int d = 1;
  for (const Conv2d& c : convs) d *= c.stride;
  return d;
}

ControlNetwork ControlNetwork::load(WeightLookup& w, const std::string& prefix) {
  ControlNetwork net;
  net.encoder_ = UnetEncoder::load(w, prefix);
  net.hint_ = load_hint(w, prefix);
  const int64_t model_channels = net.encoder_.skips().front().channels;
  expect_dim("'" + prefix + "input_hint_block' output channels (the stem's)", net.hint_.out_channels(), model_channels);
  for (size_t i = 0; i < net.encoder_.skips().size(); ++i) {
    net.zero_convs_.push_back(load_zero_conv(w, prefix + "zero_convs." + num(int64_t(i)) + ".0", net.encoder_.skips()[i].channels));
  }
  if (w.has(prefix + "zero_convs." + num(int64_t(net.zero_convs_.size())) + ".0.weight"))
    fail(ErrorCode::ModelCompatibility, "the ControlNet has more zero_convs than input blocks (" + num(int64_t(net.zero_convs_.size())) + ")");
  net.middle_out_ = load_zero_conv(w, prefix + "middle_block_out.0", net.encoder_.trace().channels);
  for (const UnetBlock& b : net.encoder_.input_blocks()) visit_unet_block_widths(b, net.context_dim_, net.max_channels_);
  visit_unet_block_widths(net.encoder_.middle(), net.context_dim_, net.max_channels_);
  if (net.context_dim_ == 0) fail(ErrorCode::ModelCompatibility, "the ControlNet has no spatial transformer: it is not text-conditioned");
  return net;
}

void ControlNetwork::check_fits(const UnetNetwork& unet) const {
  const UnetEncoder& u = unet.encoder();
  const auto refuse = [](const std::string& what) {
    fail(ErrorCode::ModelCompatibility, "the ControlNet does not fit the model's UNet: " + what);
  };
  if (encoder_.in_channels() != unet.out_channels())
    refuse("it takes " + num(encoder_.in_channels()) + " latent channels, the UNet's latent has " + num(unet.out_channels()));
  if (encoder_.model_channels() != u.model_channels() || encoder_.time_dim() != u.time_dim())
    refuse("time embedding " + num(encoder_.model_channels()) + "→" + num(encoder_.time_dim()) + ", the UNet's " +
           num(u.model_channels()) + "→" + num(u.time_dim()));
  if (encoder_.adm_channels() != u.adm_channels())
    refuse(encoder_.adm_channels() ? "it takes a vector y (label_emb, " + num(encoder_.adm_channels()) + " wide: SDXL-like), the UNet " +
                                         (u.adm_channels() ? "one " + num(u.adm_channels()) + " wide" : std::string("none (SD1.x/SD2.x-like)"))
                                   : "it has no label_emb (SD1.x/SD2.x-like), the UNet takes a vector y " + num(u.adm_channels()) +
                                         " wide (SDXL-like)");
  if (context_dim_ != unet.context_dim())
    refuse("context width " + num(context_dim_) + ", the UNet's " + num(unet.context_dim()));
  if (encoder_.skips().size() != u.skips().size())
    refuse(num(int64_t(encoder_.skips().size())) + " input blocks, the UNet has " + num(int64_t(u.skips().size())));
  for (size_t i = 0; i < u.skips().size(); ++i) {
    const UnetEncoder::Skip a = encoder_.skips()[i], b = u.skips()[i];
    if (a.channels != b.channels || a.level != b.level)
      refuse("input_blocks." + num(int64_t(i)) + " gives " + num(a.channels) + " channels at level " + num(a.level) +
             ", the UNet's " + num(b.channels) + " at level " + num(b.level));
  }
  if (encoder_.trace().channels != u.trace().channels)
    refuse("middle block " + num(encoder_.trace().channels) + " channels, the UNet's " + num(u.trace().channels));
}

void ControlNetwork::check_heads(int heads, int head_dim) const {
  if ((heads > 0) == (head_dim > 0) || heads < 0 || head_dim < 0)
    fail(ErrorCode::InvalidArgument, "the ControlNet needs exactly one of heads and headDim (a positive integer)");
  for (const UnetBlock& b : encoder_.input_blocks()) check_unet_block_heads(b, heads, head_dim);
  check_unet_block_heads(encoder_.middle(), heads, head_dim);
}

size_t ControlNetwork::graph_nodes_estimate() const {
  size_t n = 64 + 4 * hint_.convs.size() + 8 * zero_convs_.size();
  for (const UnetBlock& b : encoder_.input_blocks()) n += unet_block_nodes(b);
  return n + unet_block_nodes(encoder_.middle());
}

ggml_tensor* ControlNetwork::build_hint(ggml_context* ctx, ggml_tensor* hint) const {
  ggml_tensor* h = hint;  // [W·8, H·8, 3, 1]
  for (size_t i = 0; i < hint_.convs.size(); ++i) {
    h = conv2d(ctx, hint_.convs[i], h);
    if (i + 1 < hint_.convs.size()) h = ggml_silu(ctx, h);
  }
  ggml_format_name(h, "controlnet.guided_hint");
  return h;  // [W, H, model_channels, 1]
}

std::vector<ggml_tensor*> ControlNetwork::build(ggml_context* ctx, const ControlNetInputs& in, int heads, int head_dim,
                                                const AttentionOptions& attention) const {
  ggml_tensor* emb_silu = encoder_.embed(ctx, in.t_freq, in.y, "controlnet");
  const std::vector<UnetBlock>& blocks = encoder_.input_blocks();
  std::vector<ggml_tensor*> out;
  ggml_tensor* h = in.x;
  for (size_t i = 0; i < blocks.size(); ++i) {
    h = apply_unet_block(ctx, blocks[i], h, emb_silu, in.context, heads, head_dim, attention, "controlnet");
    if (i == 0) h = ggml_add(ctx, h, in.guided_hint);  // the hint joins after the stem (broadcast over the batch)
    ggml_tensor* r = conv2d(ctx, zero_convs_[i], h);
    ggml_format_name(r, "controlnet.residual.%zu", i);
    out.push_back(r);
  }
  h = apply_unet_block(ctx, encoder_.middle(), h, emb_silu, in.context, heads, head_dim, attention, "controlnet");
  ggml_tensor* r = conv2d(ctx, middle_out_, h);
  ggml_format_name(r, "controlnet.residual.middle");
  out.push_back(r);
  return out;
}

}  // namespace sdn
