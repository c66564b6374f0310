#include "nn/autoencoder_kl.h"

#include <algorithm>

#include "core/error.h"

namespace sdn {

namespace {

// More levels than any VAE has; 2^(levels-1) must stay a small int.
constexpr int kMaxLevels = 12;
constexpr int kMaxBlocks = 64;

std::string level_key(const std::string& base, int level) { return base + "." + std::to_string(level); }
std::string block_key(const std::string& level, int block) { return level + ".block." + std::to_string(block); }

// How many consecutive "<base>.<i><suffix>" exist from i = 0.
int count_indices(WeightLookup& w, const std::string& base, const std::string& suffix, int limit) {
  int n = 0;
  while (n <= limit && w.has(base + "." + std::to_string(n) + suffix)) ++n;
  return n;
}

void require_part(WeightLookup& w, const std::string& name, const char* part) {
  if (!w.has(name)) fail(ErrorCode::ModelCompatibility, std::string("the model has no VAE ") + part + ": '" + name + "' is missing");
}

Conv2d load_optional_pointwise(WeightLookup& w, const std::string& prefix) {
  if (!w.has(prefix + ".weight")) return Conv2d{};
  Conv2d c = Conv2d::load(w, prefix);
  expect_dim("'" + prefix + "' kernel size", c.kernel(), 1);
  return c;
}

// One conv's im2col buffer: pixels × in-channels × k².
double conv_elements(double pixels, const Conv2d& c) {
  return pixels * double(c.in_channels()) * double(c.kernel()) * double(c.kernel());
}

double resblock_elements(double pixels, const VaeResBlock& b) {
  double e = std::max(conv_elements(pixels, b.conv1), conv_elements(pixels, b.conv2));
  return std::max(e, pixels * double(std::max(b.in_channels(), b.out_channels())));
}

// block_1, attention (its H·W × H·W scores), block_2.
double mid_elements(double pixels, const VaeMid& m) {
  double e = std::max(resblock_elements(pixels, m.block_1), resblock_elements(pixels, m.block_2));
  return std::max(e, pixels * pixels);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoder

VaeEncoder VaeEncoder::load(WeightLookup& w, const std::string& prefix) {
  const std::string e = prefix + "encoder";
  require_part(w, e + ".conv_in.weight", "encoder");
  VaeEncoder net;
  net.conv_in_ = Conv2d::load(w, e + ".conv_in");
  int64_t ch = net.conv_in_.out_channels();

  const int levels = count_indices(w, e + ".down", ".block.0.norm1.weight", kMaxLevels);
  if (levels == 0) fail(ErrorCode::ModelCompatibility, "the model has no tensor '" + e + ".down.0.block.0.norm1.weight'");
  if (levels > kMaxLevels) fail(ErrorCode::ModelCompatibility, "the VAE encoder has more than " + std::to_string(kMaxLevels) + " levels");
  for (int l = 0; l < levels; ++l) {
    const std::string lk = level_key(e + ".down", l);
    Level level;
    const int blocks = count_indices(w, lk + ".block", ".norm1.weight", kMaxBlocks);
    if (blocks > kMaxBlocks) fail(ErrorCode::ModelCompatibility, "'" + lk + "' has more than " + std::to_string(kMaxBlocks) + " blocks");
    for (int b = 0; b < blocks; ++b) {
      level.blocks.push_back(VaeResBlock::load(w, block_key(lk, b), ch));
      ch = level.blocks.back().out_channels();
    }
    if (l + 1 < levels) {
      level.has_downsample = true;
      level.downsample = VaeDownsample::load(w, lk + ".downsample", ch);
      net.downscale_ *= 2;
    }
    net.levels_.push_back(std::move(level));
  }

  net.mid_ = VaeMid::load(w, e + ".mid", ch);
  net.norm_out_ = GroupNorm::load(w, e + ".norm_out", kVaeGroups, kVaeEps);
  expect_dim("'" + e + ".norm_out' channels", net.norm_out_.channels(), ch);
  net.conv_out_ = Conv2d::load(w, e + ".conv_out");
  expect_dim("'" + e + ".conv_out' input channels", net.conv_out_.in_channels(), ch);
  net.quant_conv_ = load_optional_pointwise(w, prefix + "quant_conv");
  if (net.quant_conv_.weight) {
    expect_dim("'" + prefix + "quant_conv' input channels", net.quant_conv_.in_channels(), net.conv_out_.out_channels());
  }
  if (net.moment_channels() % 2 != 0) {
    fail(ErrorCode::ModelCompatibility, "the VAE encoder makes " + std::to_string(net.moment_channels()) +
                                            " channels, not a mean and a log-variance half");
  }
  return net;
}

double VaeEncoder::peak_elements(double width, double height) const {
  double pixels = width * height;
  double peak = conv_elements(pixels, conv_in_);
  for (const Level& level : levels_) {
    for (const VaeResBlock& b : level.blocks) peak = std::max(peak, resblock_elements(pixels, b));
    if (level.has_downsample) {
      peak = std::max(peak, (width + 1) * (height + 1) * double(level.downsample.conv.in_channels()));
      pixels /= 4;
      peak = std::max(peak, conv_elements(pixels, level.downsample.conv));
    }
  }
  peak = std::max(peak, mid_elements(pixels, mid_));
  return std::max(peak, conv_elements(pixels, conv_out_));
}

ggml_tensor* VaeEncoder::build(ggml_context* ctx, ggml_tensor* x) const {
  // x [W, H, C_img, N]
  x = conv2d(ctx, conv_in_, x);  // [W, H, ch, N]
  ggml_format_name(x, "vae.enc.conv_in");
  for (size_t l = 0; l < levels_.size(); ++l) {
    const Level& level = levels_[l];
    for (size_t b = 0; b < level.blocks.size(); ++b) {
      // [W/2^l, H/2^l, C_l, N]
      x = vae_resblock(ctx, level.blocks[b], x, "vae.enc.down." + std::to_string(l) + ".block." + std::to_string(b));
    }
    if (level.has_downsample) {
      // -> [W/2^(l+1), H/2^(l+1), C_l, N]
      x = vae_downsample(ctx, level.downsample, x, "vae.enc.down." + std::to_string(l) + ".downsample");
    }
  }
  x = vae_mid(ctx, mid_, x, "vae.enc.mid");  // [W/f, H/f, C_top, N]
  x = ggml_silu(ctx, group_norm(ctx, norm_out_, x));
  x = conv2d(ctx, conv_out_, x);  // [W/f, H/f, 2·z, N]
  ggml_format_name(x, "vae.enc.conv_out");
  if (quant_conv_.weight) {
    x = conv2d(ctx, quant_conv_, x);  // [W/f, H/f, 2·embed, N]
    ggml_format_name(x, "vae.quant_conv");
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// Decoder

VaeDecoder VaeDecoder::load(WeightLookup& w, const std::string& prefix) {
  const std::string d = prefix + "decoder";
  require_part(w, d + ".conv_in.weight", "decoder");
  VaeDecoder net;
  net.post_quant_conv_ = load_optional_pointwise(w, prefix + "post_quant_conv");
  net.conv_in_ = Conv2d::load(w, d + ".conv_in");
  if (net.post_quant_conv_.weight) {
    expect_dim("'" + d + ".conv_in' input channels", net.conv_in_.in_channels(), net.post_quant_conv_.out_channels());
  }
  int64_t ch = net.conv_in_.out_channels();
  net.mid_ = VaeMid::load(w, d + ".mid", ch);

  const int levels = count_indices(w, d + ".up", ".block.0.norm1.weight", kMaxLevels);
  if (levels == 0) fail(ErrorCode::ModelCompatibility, "the model has no tensor '" + d + ".up.0.block.0.norm1.weight'");
  if (levels > kMaxLevels) fail(ErrorCode::ModelCompatibility, "the VAE decoder has more than " + std::to_string(kMaxLevels) + " levels");
  net.levels_.resize(levels);
  // LDM builds `up` from the deepest level back: channels chain from levels-1 down to 0.
  for (int l = levels - 1; l >= 0; --l) {
    const std::string lk = level_key(d + ".up", l);
    Level& level = net.levels_[l];
    const int blocks = count_indices(w, lk + ".block", ".norm1.weight", kMaxBlocks);
    if (blocks > kMaxBlocks) fail(ErrorCode::ModelCompatibility, "'" + lk + "' has more than " + std::to_string(kMaxBlocks) + " blocks");
    for (int b = 0; b < blocks; ++b) {
      level.blocks.push_back(VaeResBlock::load(w, block_key(lk, b), ch));
      ch = level.blocks.back().out_channels();
    }
    if (l != 0) {
      level.has_upsample = true;
      level.upsample = VaeUpsample::load(w, lk + ".upsample", ch);
      net.upscale_ *= 2;
    }
  }

  net.norm_out_ = GroupNorm::load(w, d + ".norm_out", kVaeGroups, kVaeEps);
  expect_dim("'" + d + ".norm_out' channels", net.norm_out_.channels(), ch);
  net.conv_out_ = Conv2d::load(w, d + ".conv_out");
  expect_dim("'" + d + ".conv_out' input channels", net.conv_out_.in_channels(), ch);
  return net;
}

double VaeDecoder::peak_elements(double width, double height) const {
  double pixels = width * height;
  double peak = conv_elements(pixels, conv_in_);
  peak = std::max(peak, mid_elements(pixels, mid_));
  for (size_t i = levels_.size(); i-- > 0;) {
    const Level& level = levels_[i];
    for (const VaeResBlock& b : level.blocks) peak = std::max(peak, resblock_elements(pixels, b));
    if (level.has_upsample) {
      pixels *= 4;
      peak = std::max(peak, conv_elements(pixels, level.upsample.conv));
    }
  }
  return std::max(peak, conv_elements(pixels, conv_out_));
}

ggml_tensor* VaeDecoder::build(ggml_context* ctx, ggml_tensor* z) const {
  // z [w, h, C_latent, N]
  if (post_quant_conv_.weight) {
    z = conv2d(ctx, post_quant_conv_, z);  // [w, h, z, N]
    ggml_format_name(z, "vae.post_quant_conv");
  }
  ggml_tensor* x = conv2d(ctx, conv_in_, z);  // [w, h, C_top, N]
  ggml_format_name(x, "vae.dec.conv_in");
  x = vae_mid(ctx, mid_, x, "vae.dec.mid");
  for (size_t l = levels_.size(); l-- > 0;) {
    const Level& level = levels_[l];
    for (size_t b = 0; b < level.blocks.size(); ++b) {
      // [w·2^(top-l), h·2^(top-l), C_l, N]
      x = vae_resblock(ctx, level.blocks[b], x, "vae.dec.up." + std::to_string(l) + ".block." + std::to_string(b));
    }
    if (level.has_upsample) {
      // -> [w·2^(top-l+1), h·2^(top-l+1), C_l, N]
      x = vae_upsample(ctx, level.upsample, x, "vae.dec.up." + std::to_string(l) + ".upsample");
    }
  }
  x = ggml_silu(ctx, group_norm(ctx, norm_out_, x));  // [W, H, C_0, N]
  x = conv2d(ctx, conv_out_, x);  // [W, H, C_img, N]
  ggml_format_name(x, "vae.dec.conv_out");
  return x;
}

namespace {

void set_block(VaeResBlock& b, const std::function<void(Conv2d&)>& set) {
  for (Conv2d* c : {&b.conv1, &b.conv2, &b.nin_shortcut}) set(*c);
}

void set_mid(VaeMid& m, const std::function<void(Conv2d&)>& set) {
  set_block(m.block_1, set);
  set_block(m.block_2, set);
}

}  // namespace

void VaeEncoder::for_each_conv(const std::function<void(Conv2d&)>& set) {
  for (Conv2d* c : {&conv_in_, &conv_out_, &quant_conv_}) set(*c);
  for (Level& l : levels_) {
    for (VaeResBlock& b : l.blocks) set_block(b, set);
    set(l.downsample.conv);
  }
  set_mid(mid_, set);
}

void VaeDecoder::for_each_conv(const std::function<void(Conv2d&)>& set) {
  for (Conv2d* c : {&post_quant_conv_, &conv_in_, &conv_out_}) set(*c);
  for (Level& l : levels_) {
    for (VaeResBlock& b : l.blocks) set_block(b, set);
    set(l.upsample.conv);
  }
  set_mid(mid_, set);
}

}  // namespace sdn
