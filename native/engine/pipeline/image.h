// Plain image and latent buffers crossing the engine boundary, and the conversions between
// 8-bit pixels and the planar floats the networks take.
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

// Interleaved 8-bit RGB(A) (alpha ignored) -> planar RGB [3][h][w], 0 -> `lo` and 255 -> `hi`
// (the range a network was trained on: [0, 1] for the TAE, [-1, 1] for the VAE).
Latent pixels_to_planar(const Image& image, float lo, float hi);
// Planar RGB [3][h][w] -> interleaved 8-bit: `lo` -> 0, `hi` -> 255, clamped (NaN -> 0), rounded.
Image planar_to_pixels(const Latent& rgb, float lo, float hi);

}  // namespace sdn
