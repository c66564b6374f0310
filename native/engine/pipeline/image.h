// Plain image and latent buffers crossing the engine boundary.
#pragma once

#include <cstdint>
#include <vector>

namespace sdn {

// Interleaved 8-bit pixels, rows top to bottom.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> data;
};

// Planar float latent [channels][height][width], as PyTorch's C×H×W.
struct Latent {
  int channels = 0;
  int width = 0;
  int height = 0;
  std::vector<float> data;
};

}  // namespace sdn
