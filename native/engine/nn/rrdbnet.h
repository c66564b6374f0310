// RRDBNet, the ESRGAN / Real-ESRGAN super-resolution network (BasicSR's rrdbnet_arch): a 3x3
// conv, a trunk of residual-in-residual dense blocks, a trunk conv added back to the features,
// nearest ×2 upsampling each followed by a conv, then an HR conv and the output conv, leaky
// ReLU 0.2 between. Features, growth channels, block count, upsampling steps and the
// pixel-unshuffle factor of the input (Real-ESRGAN x2plus: 2, its x1 models: 4) all come from
// the weights, read under the internal names of io/name_map_esrgan.h.
#pragma once

#include <vector>

#include "nn/layers.h"
#include "nn/weights.h"

namespace sdn {

// Five 3x3 convs, each reading the block input and every earlier conv's output (concatenated
// along channels); the last one's output scaled by 0.2 and added to the input.
struct DenseBlock {
  Conv2d conv[5];  // "<prefix>.conv{1..5}"

  static DenseBlock load(Weights& w, const std::string& prefix, int64_t features);
  int64_t growth() const { return conv[0].out_channels(); }
};

// Three dense blocks in a row; their result scaled by 0.2 and added to the RRDB's input.
struct Rrdb {
  DenseBlock rdb[3];  // "<prefix>.rdb{1..3}"

  static Rrdb load(Weights& w, const std::string& prefix, int64_t features);
};

class RrdbNet {
 public:
  // Declares the weights under the internal names (conv_first, body.N.rdbK.convM, conv_body,
  // conv_up1.., conv_hr, conv_last). Throws ModelCompatibility when a tensor is missing or the
  // shapes do not chain.
  static RrdbNet load(Weights& w);

  int64_t features() const { return conv_first_.out_channels(); }
  int64_t growth() const { return trunk_.empty() ? 0 : trunk_[0].rdb[0].growth(); }
  int blocks() const { return static_cast<int>(trunk_.size()); }
  // Pixels folded into channels before the first conv (pixel unshuffle), per side: 1, 2 or 4.
  int unshuffle() const { return unshuffle_; }
  // Output pixels per input pixel along each side: 2^(upsampling steps) / unshuffle().
  int scale() const { return (1 << static_cast<int>(upsample_.size())) / unshuffle_; }
  // Output values per input cell (an unshuffled cell: unshuffle() pixels a side).
  int cell_scale() const { return 1 << static_cast<int>(upsample_.size()); }
  // How far, in input cells, the network reads around the cell it writes: every conv's
  // radius at the resolution it runs at. Tiles whose cuts lie further away are exact.
  double reach() const;
  // Graph nodes one forward pass takes, about (ggml's graph size is fixed in advance).
  size_t graph_nodes() const;

  // [W, H, 3·unshuffle², N] (the image in [0, 1], already unshuffled) -> [W·s, H·s, 3, N] with
  // s = cell_scale(), not clamped.
  ggml_tensor* build(ggml_context* ctx, ggml_tensor* x) const;

 private:
  Conv2d conv_first_;             // "conv_first"
  std::vector<Rrdb> trunk_;       // "body.N"
  Conv2d conv_body_;              // "conv_body"
  std::vector<Conv2d> upsample_;  // "conv_up1", "conv_up2", ...
  Conv2d conv_hr_;                // "conv_hr"
  Conv2d conv_last_;              // "conv_last"
  int unshuffle_ = 1;
};

}  // namespace sdn
