#include "pipeline/mask.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace sdn {

namespace {

void check_pixels(const Image& image, const char* what) {
  if (image.width <= 0 || image.height <= 0) fail(ErrorCode::InvalidArgument, std::string(what) + " sides must be positive");
  if (image.channels != 1 && image.channels != 3 && image.channels != 4)
    fail(ErrorCode::InvalidArgument, std::string(what) + " must have 1, 3 or 4 channels, not " + std::to_string(image.channels));
  const size_t expected = size_t(image.width) * size_t(image.height) * size_t(image.channels);
  if (image.data.size() != expected)
    fail(ErrorCode::InvalidArgument, std::string(what) + " data has " + std::to_string(image.data.size()) +
                                         " bytes, width × height × channels is " + std::to_string(expected));
}

void check_mask(const Mask& mask, int width, int height) {
  if (mask.width != width || mask.height != height || mask.data.size() != size_t(width) * size_t(height))
    fail(ErrorCode::InvalidArgument, "the mask is " + std::to_string(mask.width) + "x" + std::to_string(mask.height) +
                                         ", the image " + std::to_string(width) + "x" + std::to_string(height));
}

// Blocks of factor × factor pixels reduced to one value each by `reduce(first, count)`.
template <typename Reduce>
Mask downsample(const Mask& mask, int factor, Reduce reduce) {
  if (factor <= 0 || mask.width % factor || mask.height % factor)
    fail(ErrorCode::InvalidArgument, "mask sides must be multiples of " + std::to_string(factor));
  check_mask(mask, mask.width, mask.height);
  Mask out;
  out.width = mask.width / factor;
  out.height = mask.height / factor;
  out.data.resize(size_t(out.width) * out.height);
  std::vector<float> block(size_t(factor) * factor);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      for (int dy = 0; dy < factor; ++dy) {
        const float* row = mask.data.data() + size_t(y * factor + dy) * mask.width + size_t(x) * factor;
        std::copy(row, row + factor, block.begin() + size_t(dy) * factor);
      }
      out.data[size_t(y) * out.width + x] = reduce(block);
    }
  }
  return out;
}

}  // namespace

Mask mask_from_pixels(const Image& pixels) {
  check_pixels(pixels, "the mask");
  Mask mask;
  mask.width = pixels.width;
  mask.height = pixels.height;
  const size_t n = size_t(pixels.width) * pixels.height;
  mask.data.resize(n);
  const int c = pixels.channels;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = pixels.data.data() + i * c;
    const float v = c == 1 ? p[0] : 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
    mask.data[i] = std::clamp(v / 255.0f, 0.0f, 1.0f);
  }
  return mask;
}

Mask blur_mask(const Mask& mask, int radius) {
  check_mask(mask, mask.width, mask.height);
  if (radius < 0) fail(ErrorCode::InvalidArgument, "the mask blur radius must be >= 0");
  if (radius == 0) return mask;
  const double sigma = radius / 3.0;
  std::vector<float> kernel(size_t(2 * radius + 1));
  for (int k = -radius; k <= radius; ++k) kernel[size_t(k + radius)] = float(std::exp(-0.5 * k * k / (sigma * sigma)));

  // Separable: rows, then columns; weights renormalised where the kernel leaves the image.
  const int w = mask.width, h = mask.height;
  auto pass = [&](const std::vector<float>& in, std::vector<float>& out, bool horizontal) {
    const int len = horizontal ? w : h;
    for (int line = 0; line < (horizontal ? h : w); ++line) {
      for (int i = 0; i < len; ++i) {
        double sum = 0, weight = 0;
        for (int k = std::max(-radius, -i); k <= std::min(radius, len - 1 - i); ++k) {
          const size_t at = horizontal ? size_t(line) * w + (i + k) : size_t(i + k) * w + line;
          sum += double(kernel[size_t(k + radius)]) * in[at];
          weight += kernel[size_t(k + radius)];
        }
        out[horizontal ? size_t(line) * w + i : size_t(i) * w + line] = float(sum / weight);
      }
    }
  };
  Mask out = mask;
  std::vector<float> tmp(mask.data.size());
  pass(mask.data, tmp, true);
  pass(tmp, out.data, false);
  return out;
}

Mask downsample_mean(const Mask& mask, int factor) {
  return downsample(mask, factor, [](const std::vector<float>& block) {
    double sum = 0;
    for (float v : block) sum += v;
    return float(sum / double(block.size()));
  });
}

Mask downsample_any(const Mask& mask, int factor) {
  return downsample(mask, factor, [](const std::vector<float>& block) {
    for (float v : block) {
      if (v >= 0.5f) return 1.0f;
    }
    return 0.0f;
  });
}

Image masked_image(const Image& image, const Mask& mask) {
  check_pixels(image, "the image");
  check_mask(mask, image.width, image.height);
  Image out = image;
  const int c = image.channels;
  for (size_t i = 0; i < mask.data.size(); ++i) {
    if (mask.data[i] < 0.5f) continue;
    // 128 is the 8-bit value nearest 0 in [-1, 1].
    for (int k = 0; k < std::min(c, 3); ++k) out.data[i * c + k] = 128;
  }
  return out;
}

Image composite(const Image& original, const Image& generated, const Mask& mask) {
  check_pixels(original, "the original image");
  check_pixels(generated, "the generated image");
  if (original.width != generated.width || original.height != generated.height || original.channels < 3)
    fail(ErrorCode::InvalidArgument, "composite: the images differ in size or the original is not RGB(A)");
  check_mask(mask, generated.width, generated.height);
  Image out = generated;
  const int co = original.channels, cg = generated.channels;
  for (size_t i = 0; i < mask.data.size(); ++i) {
    const float m = mask.data[i];
    for (int k = 0; k < 3; ++k) {
      const uint8_t a = original.data[i * co + k];
      const uint8_t b = generated.data[i * cg + k];
      out.data[i * cg + k] = m <= 0.0f ? a : m >= 1.0f ? b : uint8_t(std::lround(a + (b - a) * m));
    }
  }
  return out;
}

}  // namespace sdn
