// Inpainting masks: from the user's pixels to the soft per-pixel mask, its latent-sized
// versions, the masked image an inpainting UNet is conditioned on, and the final composite
// that keeps the original pixels outside the mask exactly.
#pragma once

#include <vector>

#include "pipeline/image.h"

namespace sdn {

// One value per pixel (or latent cell) in [0, 1], rows top to bottom; 1 = repaint.
struct Mask {
  int width = 0;
  int height = 0;
  std::vector<float> data;
};

// 8-bit mask pixels -> [0, 1]: one channel as is, RGB(A) by luminance (ITU-R 601, as PIL's "L"
// conversion the webui applies), alpha ignored. Throws InvalidArgument for malformed images.
Mask mask_from_pixels(const Image& pixels);

// Gaussian blur with sigma = radius / 3, truncated at `radius` pixels (so a pixel farther
// than `radius` from every masked pixel stays exactly 0) and renormalised at the borders.
// radius 0 returns the mask unchanged.
Mask blur_mask(const Mask& mask, int radius);

// `factor` × `factor` blocks -> one cell: their mean (how much of the cell is repainted).
Mask downsample_mean(const Mask& mask, int factor);

// `factor` × `factor` blocks -> one cell: 1 when any pixel of the block is >= 0.5, else 0 (the
// mask channel of inpainting UNets: a cell touching the repainted area counts as repainted).
Mask downsample_any(const Mask& mask, int factor);

// The image with the repainted area (mask >= 0.5) set to mid-gray, 0 in the VAE's [-1, 1]
// range: what inpainting models were trained to see.
Image masked_image(const Image& image, const Mask& mask);

// original · (1 − m) + generated · m per pixel, rounded; where m is 0 the original's bytes are
// kept exactly. The result has the generated image's channels (RGB); sizes must match.
Image composite(const Image& original, const Image& generated, const Mask& mask);

}  // namespace sdn
