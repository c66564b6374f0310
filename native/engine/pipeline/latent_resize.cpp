#include "pipeline/latent_resize.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"

namespace sdn {

namespace {

// One output index's inputs along an axis: (input index, weight).
using Taps = std::vector<std::pair<int, double>>;

// Keys' cubic convolution kernel with parameter a (torch: -0.75 plain, -0.5 antialiased).
double cubic(double x, double a) {
  x = std::abs(x);
  if (x <= 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
  return 0.0;
}

double sinc(double x) {
  if (std::abs(x) < 1e-12) return 1.0;
  const double pix = M_PI * x;
  return std::sin(pix) / pix;
}

double lanczos3(double x) { return std::abs(x) < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0; }

// torch's plain (align_corners=False) sampling positions: pixel centres mapped back.
Taps plain_taps(int in, int out, int o, ResizeFilter filter) {
  const double scale = double(in) / out;
  switch (filter) {
    case ResizeFilter::Nearest:
      return {{std::min(static_cast<int>(std::floor(o * scale)), in - 1), 1.0}};
    case ResizeFilter::NearestExact:
      return {{std::min(static_cast<int>(std::floor((o + 0.5) * scale)), in - 1), 1.0}};
    case ResizeFilter::Bilinear: {
      // Positions left of the first centre take the first value (torch clamps the source at 0).
      const double src = std::max((o + 0.5) * scale - 0.5, 0.0);
      const int x0 = static_cast<int>(src), x1 = std::min(x0 + 1, in - 1);
      const double t = src - x0;
      return {{x0, 1.0 - t}, {x1, t}};
    }
    case ResizeFilter::Bicubic: {
      const double src = (o + 0.5) * scale - 0.5;
      const int x0 = static_cast<int>(std::floor(src));
      const double t = src - x0;
      const double w[4] = {cubic(t + 1.0, -0.75), cubic(t, -0.75), cubic(1.0 - t, -0.75), cubic(2.0 - t, -0.75)};
      Taps taps;
      for (int j = 0; j < 4; ++j) taps.push_back({std::clamp(x0 - 1 + j, 0, in - 1), w[j]});
      return taps;
    }
    case ResizeFilter::Lanczos:
      break;
  }
  fail(ErrorCode::InvalidArgument, "no plain sampling for this filter");
}

// The filter sampled over its support around the output's centre, widened by the downscale
// factor, cut at the borders and renormalised (torch's antialiased path, PIL's resampling).
Taps filtered_taps(int in, int out, int o, ResizeFilter filter) {
  const double scale = double(in) / out;
  const double stretch = std::max(scale, 1.0);
  const double radius = filter == ResizeFilter::Bilinear ? 1.0 : filter == ResizeFilter::Bicubic ? 2.0 : 3.0;
  const double support = radius * stretch;
  const double center = scale * (o + 0.5);
  // Truncation toward zero, as torch and PIL bound the taps.
  const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
  const int hi = std::min(static_cast<int>(center + support + 0.5), in);
  Taps taps;
  double total = 0;
  for (int i = lo; i < hi; ++i) {
    const double x = (i - center + 0.5) / stretch;
    const double w = filter == ResizeFilter::Bilinear ? std::max(0.0, 1.0 - std::abs(x))
                     : filter == ResizeFilter::Bicubic ? cubic(x, -0.5)
                                                       : lanczos3(x);
    taps.push_back({i, w});
    total += w;
  }
  if (total != 0.0)
    for (auto& tap : taps) tap.second /= total;
  return taps;
}

std::vector<Taps> axis_taps(int in, int out, ResizeFilter filter, bool antialias) {
  const bool filtered = filter == ResizeFilter::Lanczos ||
                        (antialias && (filter == ResizeFilter::Bilinear || filter == ResizeFilter::Bicubic));
  std::vector<Taps> taps(out);
  for (int o = 0; o < out; ++o) taps[o] = filtered ? filtered_taps(in, out, o, filter) : plain_taps(in, out, o, filter);
  return taps;
}

}  // namespace

ResizeFilter parse_resize_filter(const std::string& name) {
  if (name == "nearest") return ResizeFilter::Nearest;
  if (name == "nearest-exact") return ResizeFilter::NearestExact;
  if (name == "bilinear") return ResizeFilter::Bilinear;
  if (name == "bicubic") return ResizeFilter::Bicubic;
  if (name == "lanczos") return ResizeFilter::Lanczos;
  fail(ErrorCode::InvalidArgument, "unknown resize filter '" + name + "' (nearest, nearest-exact, bilinear, bicubic, lanczos)");
}

Latent resize_planes(const Latent& in, int width, int height, ResizeFilter filter, bool antialias) {
  if (in.channels <= 0 || in.width <= 0 || in.height <= 0 || in.data.size() != size_t(in.channels) * in.width * in.height)
    fail(ErrorCode::InvalidArgument, "resize: the input's size does not match its data");
  if (width <= 0 || height <= 0) fail(ErrorCode::InvalidArgument, "resize: the output sides must be positive");
  const std::vector<Taps> xs = axis_taps(in.width, width, filter, antialias);
  const std::vector<Taps> ys = axis_taps(in.height, height, filter, antialias);
  Latent out{in.channels, width, height, std::vector<float>(size_t(in.channels) * width * height)};
  std::vector<double> row(width);
  for (int c = 0; c < in.channels; ++c) {
    const float* plane = in.data.data() + size_t(c) * in.width * in.height;
    float* target = out.data.data() + size_t(c) * width * height;
    for (int y = 0; y < height; ++y) {
      std::fill(row.begin(), row.end(), 0.0);
      for (const auto& [iy, wy] : ys[y]) {
        const float* src = plane + size_t(iy) * in.width;
        for (int x = 0; x < width; ++x) {
          double v = 0;
          for (const auto& [ix, wx] : xs[x]) v += wx * src[ix];
          row[x] += wy * v;
        }
      }
      for (int x = 0; x < width; ++x) target[size_t(y) * width + x] = static_cast<float>(row[x]);
    }
  }
  return out;
}

}  // namespace sdn
