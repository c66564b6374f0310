#include "pipeline/image.h"

#include <algorithm>
#include <cmath>

namespace sdn {

Latent pixels_to_planar(const Image& image, float lo, float hi) {
  const float per_level = 255.0f / (hi - lo);  // 255 for [0, 1], 127.5 for [-1, 1]
  const size_t plane = size_t(image.width) * size_t(image.height);
  Latent rgb;
  rgb.width = image.width;
  rgb.height = image.height;
  rgb.channels = 3;
  rgb.data.resize(plane * 3);
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) rgb.data[c * plane + i] = image.data[i * image.channels + c] / per_level + lo;
  }
  return rgb;
}

Image planar_to_pixels(const Latent& rgb, float lo, float hi) {
  const float scale = 1.0f / (hi - lo);
  Image image;
  image.width = rgb.width;
  image.height = rgb.height;
  image.channels = 3;
  const size_t plane = size_t(image.width) * size_t(image.height);
  image.data.resize(plane * 3);
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      float v = (rgb.data[c * plane + i] - lo) * scale;
      v = std::isnan(v) ? 0.0f : std::min(1.0f, std::max(0.0f, v));
      image.data[i * 3 + c] = static_cast<uint8_t>(std::lround(v * 255.0f));
    }
  }
  return image;
}

}  // namespace sdn
