// Resizing planar float data (latents, and RGB planes in the hires fix's pixel path) with the
// filters of PyTorch's F.interpolate, which the webui's "Latent" hires upscalers call and
// stable-diffusion.cpp reproduces: nearest, nearest-exact, bilinear and bicubic with
// align_corners=False, each optionally antialiased; plus Lanczos-3 for pixels. Separable, with
// each output value accumulated in double from per-axis weights.
#pragma once

#include <string>

#include "pipeline/image.h"

namespace sdn {

enum class ResizeFilter {
  Nearest,       // torch 'nearest': source index floor(out · in/out_size)
  NearestExact,  // torch 'nearest-exact': floor((out + 0.5) · in/out_size)
  Bilinear,      // torch 'bilinear'; antialiased: its triangle filter widened by the downscale factor
  Bicubic,       // torch 'bicubic' (a = -0.75); antialiased: PIL's cubic (a = -0.5), widened likewise
  Lanczos,       // Lanczos-3, weights normalised (as stable-diffusion.cpp's and PIL's), widened when downscaling
};

// "nearest", "nearest-exact", "bilinear", "bicubic", "lanczos"; InvalidArgument otherwise.
ResizeFilter parse_resize_filter(const std::string& name);

// Every channel of `in` resized to width × height. `antialias` applies to bilinear and bicubic
// (torch's antialias=True): the filter is sampled over its support (widened when a side
// shrinks), cut at the borders and renormalised, as PIL resamples; Lanczos always works so.
// InvalidArgument for empty input, non-positive sizes or a data size that does not match.
Latent resize_planes(const Latent& in, int width, int height, ResizeFilter filter, bool antialias);

}  // namespace sdn
