#include "pipeline/upscaler.h"

#include <algorithm>
#include <cmath>

#include "ggml.h"
#include "io/model_file.h"
#include "io/name_map_esrgan.h"
#include "nn/rrdbnet.h"
#include "nn/weights.h"
#include "pipeline/graph.h"
#include "pipeline/vae_tiling.h"

namespace sdn {

struct EsrganUpscaler::Loaded {
  TensorStore store;
  std::unique_ptr<Weights> weights;
  RrdbNet net;
};

EsrganUpscaler::EsrganUpscaler(const UpscalerOptions& options, const JobControl* job) {
  ModelFile file = open_model_file(options.path);
  info_.format = file_format_name(file.format);
  EsrganNames names;
  try {
    names = map_esrgan_names(std::move(file.store));
  } catch (const Error& e) {
    fail(e.code(), options.path + ": " + e.what());
  }
  info_.convention = names.convention;
  loaded_ = std::make_unique<Loaded>();
  loaded_->store = std::move(names.store);
  const ggml_type type = options.f16_weights ? GGML_TYPE_F16 : GGML_TYPE_F32;
  loaded_->weights = std::make_unique<Weights>(loaded_->store, type, loaded_->store.size());
  try {
    loaded_->net = RrdbNet::load(*loaded_->weights);
  } catch (const Error& e) {
    // Well-formed tensors that do not make an RRDBNet: to users, not an upscaler file.
    const ErrorCode code = e.code() == ErrorCode::ModelCompatibility ? ErrorCode::ModelFormat : e.code();
    fail(code, options.path + ": not an ESRGAN (RRDBNet) file: " + e.what());
  }
  const RrdbNet& net = loaded_->net;
  info_.scale = net.scale();
  info_.features = static_cast<int>(net.features());
  info_.growth = static_cast<int>(net.growth());
  info_.blocks = net.blocks();
  info_.unshuffle = net.unshuffle();
  info_.reach = net.reach() * net.unshuffle();
  if (job) {
    job->throw_if_cancelled();
    job->report(1, 2);
  }

  runtime_ = std::make_unique<Runtime>(options.device, options.threads);
  info_.device = options.device;
  loaded_->weights->upload(runtime_->weight_buffer_type());
  info_.weight_bytes = loaded_->weights->bytes();
  if (job) job->report(2, 2);
}

EsrganUpscaler::~EsrganUpscaler() {
  // Weights live in buffers of the runtime's backend: free them first.
  loaded_.reset();
  runtime_.reset();
}

namespace {

// Side `n` reflected into [0, size) as numpy's / PyTorch's "reflect" pads (edge not repeated).
int reflect(int n, int size) {
  if (size == 1) return 0;
  const int period = 2 * (size - 1);
  n = ((n % period) + period) % period;
  return n < size ? n : period - n;
}

// Planar RGB padded on the right and bottom to multiples of `f`, by reflection.
Latent pad_to_multiple(const Latent& rgb, int f) {
  const int w = (rgb.width + f - 1) / f * f, h = (rgb.height + f - 1) / f * f;
  if (w == rgb.width && h == rgb.height) return rgb;
  Latent out{rgb.channels, w, h, std::vector<float>(size_t(rgb.channels) * w * h)};
  for (int c = 0; c < rgb.channels; ++c) {
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        out.data[(size_t(c) * h + y) * w + x] =
            rgb.data[(size_t(c) * rgb.height + reflect(y, rgb.height)) * rgb.width + reflect(x, rgb.width)];
      }
    }
  }
  return out;
}

// PyTorch's pixel_unshuffle(f): [C, H, W] -> [C·f², H/f, W/f], channel c·f² + i·f + j holding
// the pixels at row offset i and column offset j of each f×f cell.
Latent pixel_unshuffle(const Latent& x, int f) {
  if (f == 1) return x;
  const int w = x.width / f, h = x.height / f, channels = x.channels * f * f;
  Latent out{channels, w, h, std::vector<float>(size_t(channels) * w * h)};
  for (int c = 0; c < x.channels; ++c) {
    for (int i = 0; i < f; ++i) {
      for (int j = 0; j < f; ++j) {
        float* dst = out.data.data() + size_t((c * f + i) * f + j) * w * h;
        for (int y = 0; y < h; ++y) {
          const float* src = x.data.data() + (size_t(c) * x.height + size_t(y) * f + i) * x.width + j;
          for (int xx = 0; xx < w; ++xx) dst[size_t(y) * w + xx] = src[size_t(xx) * f];
        }
      }
    }
  }
  return out;
}

Latent crop(const Latent& from, int x0, int y0, int width, int height) {
  Latent out{from.channels, width, height, std::vector<float>(size_t(from.channels) * width * height)};
  for (int c = 0; c < from.channels; ++c) {
    for (int y = 0; y < height; ++y) {
      const float* src = from.data.data() + (size_t(c) * from.height + y0 + y) * from.width + x0;
      std::copy(src, src + width, out.data.data() + (size_t(c) * height + y) * width);
    }
  }
  return out;
}

// Smootherstep, 6t⁵ − 15t⁴ + 10t³: 0 to 1 with no kink at either end, and s(t) + s(1 − t) = 1,
// so two mirrored ramps still sum to 1. stable-diffusion.cpp blends its tiles with it, which
// keeps our tiles' seams equal to its where the tiles lie the same.
double smootherstep(double t) { return t * t * t * (t * (6 * t - 15) + 10); }

// How much tile k counts along one axis at each of its `units` output values (`per_cell` a
// cell): 1 inside, ramping to 0 towards a neighbour across their shared cells. The ramp runs
// across the part of the overlap at least `reach` cells from both tiles' cut edges when there
// is such a part (there both tiles are exact), else across the whole overlap. A neighbour's
// ramp over the same cells is this one mirrored: the two sum to 1.
std::vector<float> axis_weights(const std::vector<TileSpan>& spans, size_t k, int per_cell, double reach) {
  const TileSpan& s = spans[k];
  const int lead = k > 0 ? spans[k - 1].begin + spans[k - 1].size - s.begin : 0;
  const int trail = k + 1 < spans.size() ? s.begin + s.size - spans[k + 1].begin : 0;
  const auto ramp = [reach](double t, int overlap) {
    if (overlap <= 0) return 1.0;
    const double margin = overlap > 2 * reach ? reach : 0.0;
    return smootherstep(std::clamp((t - margin) / (overlap - 2 * margin), 0.0, 1.0));
  };
  std::vector<float> w(size_t(s.size) * per_cell);
  for (size_t i = 0; i < w.size(); ++i) {
    // Cells from the tile's start at the value's left edge, as stable-diffusion.cpp samples its
    // ramps (a ramp's first value weighs 0; its mirror's weighs 1 there).
    const double t = double(i) / per_cell;
    w[i] = static_cast<float>(std::min(ramp(t, lead), ramp(s.size - t, trail)));
  }
  return w;
}

int count_tiles(int cells_w, int cells_h, int tile, int overlap) {
  if (tile <= 0) return 1;
  return static_cast<int>(tile_spans(cells_w, tile, overlap).size() * tile_spans(cells_h, tile, overlap).size());
}

}  // namespace

// `rgb` planar [3][h][w] in [0, 1] -> planar [3][h·s][w·s].
Latent EsrganUpscaler::upscale_planar(const Latent& rgb, const UpscaleParams& params, const JobControl& job, int& done,
                                      int steps) {
  const RrdbNet& net = loaded_->net;
  const int f = net.unshuffle(), u = net.cell_scale();
  const Latent cells = pixel_unshuffle(pad_to_multiple(rgb, f), f);
  const int tile = params.tile > 0 ? std::max(1, params.tile / f) : std::max(cells.width, cells.height);
  const int overlap = std::min(params.overlap / f, tile / 2);
  const GraphBuild build = [&net](ggml_context* ctx, ggml_tensor* x) { return net.build(ctx, x); };
  const JobControl quiet(&job);  // tiles report, not the graph chunks inside them

  const double per_tile = double(std::min(tile, cells.width)) * std::min(tile, cells.height) * u * u * net.features() * 9;
  check_intermediate_size(per_tile, "a tile of the image is too large to upscale at once: use a smaller tile");
  check_intermediate_size(double(cells.width) * cells.height * u * u * 4, "the upscaled image would be too large");

  const std::vector<TileSpan> xs = tile_spans(cells.width, tile, overlap), ys = tile_spans(cells.height, tile, overlap);
  Latent out{3, cells.width * u, cells.height * u, std::vector<float>(size_t(3) * cells.width * u * cells.height * u, 0.0f)};
  std::vector<float> weight_sum(size_t(out.width) * out.height, 0.0f);
  const size_t plane = weight_sum.size();
  std::vector<std::vector<float>> column_weights;  // the same for every row of tiles
  for (size_t tx = 0; tx < xs.size(); ++tx) column_weights.push_back(axis_weights(xs, tx, u, net.reach()));
  for (size_t ty = 0; ty < ys.size(); ++ty) {
    const std::vector<float> wy = axis_weights(ys, ty, u, net.reach());
    for (size_t tx = 0; tx < xs.size(); ++tx) {
      const std::vector<float>& wx = column_weights[tx];
      const Latent in = crop(cells, xs[tx].begin, ys[ty].begin, xs[tx].size, ys[ty].size);
      const Latent piece = run_planar(*runtime_, in, "esrgan.input", build, net.graph_nodes(), 0, quiet);
      if (piece.width != in.width * u || piece.height != in.height * u || piece.channels != 3) {
        fail(ErrorCode::Internal, "an upscaled tile has another size");
      }
      const size_t ox = size_t(xs[tx].begin) * u, oy = size_t(ys[ty].begin) * u, tile_plane = size_t(piece.width) * piece.height;
      for (int y = 0; y < piece.height; ++y) {
        const size_t row = (oy + y) * out.width + ox;
        for (int x = 0; x < piece.width; ++x) {
          const float w = wy[y] * wx[x];
          weight_sum[row + x] += w;
          for (int c = 0; c < 3; ++c) out.data[c * plane + row + x] += w * piece.data[c * tile_plane + size_t(y) * piece.width + x];
        }
      }
      job.report(++done, steps);
    }
  }
  for (size_t i = 0; i < plane; ++i) {
    if (!(weight_sum[i] > 0)) fail(ErrorCode::Internal, "an upscaled pixel no tile covers");
    for (int c = 0; c < 3; ++c) out.data[c * plane + i] /= weight_sum[i];
  }
  const int s = net.scale();
  return out.width == rgb.width * s && out.height == rgb.height * s ? out : crop(out, 0, 0, rgb.width * s, rgb.height * s);
}

Image EsrganUpscaler::upscale(const Image& image, const UpscaleParams& params, const JobControl& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (image.width <= 0 || image.height <= 0) fail(ErrorCode::InvalidArgument, "image sides must be positive");
  if (image.channels != 3 && image.channels != 4) fail(ErrorCode::InvalidArgument, "image must have 3 or 4 channels");
  if (image.data.size() != size_t(image.width) * image.height * image.channels) {
    fail(ErrorCode::InvalidArgument, "image data has the wrong length");
  }
  if (params.tile < 0 || params.tile > 4096 || params.overlap < 0 || params.overlap > params.tile / 2) {
    fail(ErrorCode::InvalidArgument, "tile must be 0 to 4096 pixels and overlap 0 to tile / 2");
  }
  if (params.repeats < 1 || params.repeats > 4) fail(ErrorCode::InvalidArgument, "repeats must be 1 to 4");
  const int f = info_.unshuffle, s = info_.scale;
  // Tiles of every repeat, for one progress count over the job.
  int steps = 0;
  double w = image.width, h = image.height;
  const int tile = params.tile > 0 ? std::max(1, params.tile / f) : 0;
  for (int r = 0; r < params.repeats; ++r) {
    if (w * s > 65536 || h * s > 65536) fail(ErrorCode::Resource, "the upscaled image would be larger than 65536 pixels a side");
    steps += count_tiles(int(std::ceil(w / f)), int(std::ceil(h / f)), tile, std::min(params.overlap / f, tile / 2));
    w *= s;
    h *= s;
  }
  int done = 0;
  Image current = image;
  for (int r = 0; r < params.repeats; ++r) {
    job.throw_if_cancelled();
    // 8-bit between repeats, as each repeat's result is an image.
    current = planar_to_pixels(upscale_planar(pixels_to_planar(current, 0.0f, 1.0f), params, job, done, steps), 0.0f, 1.0f);
  }
  return current;
}

}  // namespace sdn
