#include "pipeline/vae_tiling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"

namespace sdn {

namespace {

constexpr int kMaxTile = 4096;
// Query slices an attention stage may take (each adds a few nodes to its graph).
constexpr int64_t kMaxAttentionSlices = 1024;

// ---------------------------------------------------------------------------------------------
// Tiles along an axis

// Weights of one tile along an axis: 1 inside, ramping linearly down to the tile's edge across
// the part it shares with the tile before (`lead`) and after (`trail`). Two neighbours' ramps
// over their shared stretch sum to 1; samples sit at unit centres, so no weight is 0 and the
// image edge (no neighbour) keeps full weight.
std::vector<float> axis_weights(int size, int lead, int trail) {
  std::vector<float> w(size, 1.0f);
  for (int i = 0; i < size; ++i) {
    if (lead > 0 && i < lead) w[i] = std::min(w[i], (i + 0.5f) / lead);
    if (trail > 0 && i >= size - trail) w[i] = std::min(w[i], (size - i - 0.5f) / trail);
  }
  return w;
}

// Tile k's blending weights along an axis, `per_cell` units per cell.
std::vector<float> span_weights(const std::vector<TileSpan>& spans, size_t k, int per_cell) {
  const int lead = k > 0 ? spans[k - 1].begin + spans[k - 1].size - spans[k].begin : 0;
  const int trail = k + 1 < spans.size() ? spans[k].begin + spans[k].size - spans[k + 1].begin : 0;
  return axis_weights(spans[k].size * per_cell, lead * per_cell, trail * per_cell);
}

// The part of its span each tile keeps, relative to the tile, in cells: neighbours split their
// overlap in the middle, so the parts cover the axis once, each away from its tile's edges.
std::vector<TileSpan> span_shares(const std::vector<TileSpan>& spans) {
  std::vector<TileSpan> out;
  for (size_t k = 0; k < spans.size(); ++k) {
    const int end = spans[k].begin + spans[k].size;
    const int lo = k > 0 ? (spans[k - 1].begin + spans[k - 1].size + spans[k].begin) / 2 : spans[k].begin;
    const int hi = k + 1 < spans.size() ? (end + spans[k + 1].begin) / 2 : end;
    out.push_back({lo - spans[k].begin, hi - lo});
  }
  return out;
}

// `span` widened by `margin` cells on both sides, within [0, length).
TileSpan around(TileSpan span, int margin, int length) {
  const int begin = std::max(0, span.begin - margin), end = std::min(length, span.begin + span.size + margin);
  return {begin, end - begin};
}

// ---------------------------------------------------------------------------------------------
// The network's graph, and where it can be cut

struct TileGraph {
  const GraphBuild& build;
  const char* input_name;
  size_t max_nodes;
};

// The network built for one input size, its nodes inputs-first (a depth-first post-order: it
// follows the network's structure only, so position p names the same tensor in every build).
struct NetGraph {
  std::unique_ptr<GraphContext> g;
  ggml_tensor* in = nullptr;
  ggml_tensor* out = nullptr;
  std::vector<ggml_tensor*> order;
};

std::vector<ggml_tensor*> post_order(ggml_tensor* out) {
  std::vector<ggml_tensor*> order;
  std::unordered_set<ggml_tensor*> seen{out};
  std::vector<std::pair<ggml_tensor*, int>> stack{{out, 0}};  // node, next source to visit
  while (!stack.empty()) {
    ggml_tensor* t = stack.back().first;
    const int next = stack.back().second;
    if (next < GGML_MAX_SRC) {
      stack.back().second = next + 1;
      ggml_tensor* src = t->src[next];
      if (src && seen.insert(src).second) stack.push_back({src, 0});
      continue;
    }
    stack.pop_back();
    order.push_back(t);
  }
  return order;
}

NetGraph build_net(const TileGraph& net, int width, int height, int channels) {
  NetGraph n;
  // Room for the statistics' inputs and the rewiring beside the network's own nodes.
  n.g = std::make_unique<GraphContext>(net.max_nodes * 2);
  n.in = ggml_new_tensor_4d(n.g->ctx, GGML_TYPE_F32, width, height, channels, 1);
  ggml_set_name(n.in, net.input_name);
  ggml_set_input(n.in);
  n.out = net.build(n.g->ctx, n.in);
  n.order = post_order(n.out);
  return n;
}

// The network cut before each of its K GroupNorms into K + 1 stages. Cut k: the activations
// made before GroupNorm k and used from it on, by position; stage k runs from cut k − 1 (the
// network's input for k = 0) to cut k (its output for k = K).
struct Plan {
  struct Norm {
    size_t pos = 0;    // of the GroupNorm node
    size_t input = 0;  // its input's index in cuts[k]
    int groups = 1;
    float eps = 0;
  };
  std::vector<Norm> norms;
  std::vector<std::vector<size_t>> cuts;
  std::vector<std::vector<int>> carried;  // carried[k][i]: index of cuts[k][i] in cuts[k − 1], or −1
  std::vector<bool> attends;              // per stage: a softmax (attention) sees all its input
  std::vector<double> reach;              // per stage: cells its convolutions and paddings reach (∞: unknown)
  size_t nodes = 0;
};

// Cells around a position whose input an op's output there reads, for ops that reach beyond
// the position (`units_per_cell`: the op input's units per latent cell); ∞ for spatial ops of
// unknown reach; 0 for the rest (element-wise, matrix products over channels, reshapes).
double op_reach(const ggml_tensor* t, double units_per_cell) {
  int32_t p[8] = {};
  std::memcpy(p, t->op_params, sizeof(p));
  switch (t->op) {
    case GGML_OP_IM2COL: {  // params s0, s1, p0, p1, d0, d1, is_2D; kernel [KW, KH, ...]
      const ggml_tensor* kernel = t->src[0];
      const int64_t units = std::max<int64_t>((kernel->ne[0] - 1) * p[4], p[6] ? (kernel->ne[1] - 1) * p[5] : 0);
      return double(units) / units_per_cell;
    }
    case GGML_OP_PAD:  // params lp0, rp0, lp1, rp1, ...
      return double(std::max({p[0], p[1], p[2], p[3]})) / units_per_cell;
    case GGML_OP_UPSCALE:  // nearest or interpolating: at most one input unit
      return 1.0 / units_per_cell;
    case GGML_OP_IM2COL_BACK:
    case GGML_OP_IM2COL_3D:
    case GGML_OP_CONV_TRANSPOSE_1D:
    case GGML_OP_CONV_TRANSPOSE_2D:
    case GGML_OP_CONV_2D:
    case GGML_OP_CONV_3D:
    case GGML_OP_CONV_2D_DW:
    case GGML_OP_POOL_1D:
    case GGML_OP_POOL_2D:
    case GGML_OP_PAD_REFLECT_1D:
    case GGML_OP_ROLL:
      return INFINITY;
    default:
      return 0;
  }
}

Plan make_plan(const NetGraph& n, int tile_w) {
  const std::vector<ggml_tensor*>& order = n.order;
  std::unordered_map<const ggml_tensor*, size_t> pos;
  for (size_t i = 0; i < order.size(); ++i) pos[order[i]] = i;
  // Activations (what depends on the input) and where each is last used.
  std::vector<char> activation(order.size(), 0);
  std::vector<size_t> last_use(order.size(), 0);
  for (size_t i = 0; i < order.size(); ++i) {
    activation[i] = order[i] == n.in;
    for (ggml_tensor* src : order[i]->src) {
      if (!src) continue;
      const size_t j = pos.at(src);
      activation[i] |= activation[j];
      last_use[j] = std::max(last_use[j], i);
    }
  }

  Plan plan;
  plan.nodes = order.size();
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i]->op != GGML_OP_GROUP_NORM || !activation[i]) continue;
    Plan::Norm norm;
    norm.pos = i;
    std::memcpy(&norm.groups, order[i]->op_params, sizeof(int32_t));
    std::memcpy(&norm.eps, reinterpret_cast<const char*>(order[i]->op_params) + sizeof(int32_t), sizeof(float));
    std::vector<size_t> cut;
    for (size_t j = 0; j < i; ++j) {
      if (!activation[j] || last_use[j] < i) continue;
      const ggml_tensor* t = order[j];
      // Cut tensors travel as planar f32 [C][H][W] images of the tile.
      if (t->view_src || !ggml_is_contiguous(t) || t->type != GGML_TYPE_F32 || t->ne[3] != 1) {
        fail(ErrorCode::Internal, "the VAE graph cannot be cut for tiling before a GroupNorm");
      }
      if (j == pos.at(order[i]->src[0])) norm.input = cut.size();
      cut.push_back(j);
    }
    if (cut.empty() || cut[norm.input] != pos.at(order[i]->src[0])) {
      fail(ErrorCode::Internal, "a GroupNorm of the VAE reads no activation of its own");
    }
    plan.norms.push_back(norm);
    plan.cuts.push_back(std::move(cut));
  }
  for (size_t k = 0; k < plan.cuts.size(); ++k) {
    std::vector<int> c;
    for (size_t p : plan.cuts[k]) {
      int from = -1;
      if (k > 0) {
        const auto& prev = plan.cuts[k - 1];
        const auto it = std::find(prev.begin(), prev.end(), p);
        if (it != prev.end()) from = static_cast<int>(it - prev.begin());
      }
      c.push_back(from);
    }
    plan.carried.push_back(std::move(c));
  }
  for (size_t k = 0; k <= plan.norms.size(); ++k) {
    const size_t begin = k == 0 ? 0 : plan.norms[k - 1].pos;
    const size_t end = k == plan.norms.size() ? order.size() : plan.norms[k].pos;
    bool attends = false;
    double reach = 0;  // summed over the stage: a bound for any path through it
    for (size_t i = begin; i < end; ++i) {
      if (!activation[i]) continue;
      const ggml_tensor* t = order[i];
      attends |= t->op == GGML_OP_SOFT_MAX || t->op == GGML_OP_FLASH_ATTN_EXT;
      const ggml_tensor* x = t->op == GGML_OP_IM2COL ? t->src[1] : t->src[0];
      if (x) reach += op_reach(t, double(x->ne[0]) / tile_w);
    }
    plan.attends.push_back(attends);
    plan.reach.push_back(reach);
  }
  return plan;
}

// One GroupNorm's statistics over the whole image, per channel (a group's channels share them).
struct NormStats {
  std::vector<float> mean, rstd;
};

// GroupNorm's statistics from its whole-image input: groups of ceil(C / groups) channels, the
// last possibly smaller (as ggml groups them), mean and biased variance in double.
NormStats norm_stats(const Latent& x, int groups, float eps) {
  const size_t channels = x.channels, plane = size_t(x.width) * size_t(x.height);
  const size_t per_group = (channels + groups - 1) / groups;
  NormStats s;
  s.mean.resize(channels);
  s.rstd.resize(channels);
  for (size_t begin = 0; begin < channels; begin += per_group) {
    const size_t end = std::min(channels, begin + per_group);
    const float* v = x.data.data() + begin * plane;
    const size_t n = (end - begin) * plane;
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += v[i];
    const double mean = sum / double(n);
    double squares = 0;
    for (size_t i = 0; i < n; ++i) squares += (v[i] - mean) * (v[i] - mean);
    const float rstd = static_cast<float>(1.0 / std::sqrt(squares / double(n) + double(eps)));
    for (size_t c = begin; c < end; ++c) {
      s.mean[c] = static_cast<float>(mean);
      s.rstd[c] = rstd;
    }
  }
  return s;
}

// The plain attention path (scores = K·Q, softmax, V·scores) rewritten to take `chunks` slices
// of the queries in turn against all keys, the slices' results concatenated: the same values,
// while the [keys × queries] score matrix never exists whole. False (the graph unchanged) when
// an attention in `order` has another shape (a mask, the fused op, more users of the scores).
bool chunk_attention(ggml_context* ctx, const std::vector<ggml_tensor*>& order, int64_t chunks) {
  struct Site {
    ggml_tensor* scores;
    ggml_tensor* softmax;
    ggml_tensor* weighted;
  };
  std::unordered_map<const ggml_tensor*, std::vector<ggml_tensor*>> users;
  for (ggml_tensor* t : order) {
    for (ggml_tensor* src : t->src) {
      if (src) users[src].push_back(t);
    }
  }
  std::vector<Site> sites;
  for (ggml_tensor* t : order) {
    if (t->op == GGML_OP_FLASH_ATTN_EXT) return false;
    if (t->op != GGML_OP_SOFT_MAX) continue;
    ggml_tensor* scores = t->src[0];
    const std::vector<ggml_tensor*>& out = users[t];
    if (t->src[1] || t->src[2] || scores->op != GGML_OP_MUL_MAT || users[scores].size() != 1 || out.size() != 1 ||
        out[0]->op != GGML_OP_MUL_MAT || out[0]->src[1] != t || scores->ne[1] < chunks) {
      return false;
    }
    sites.push_back({scores, t, out[0]});
  }
  for (const Site& site : sites) {
    ggml_tensor* k = site.scores->src[0];  // [dh, M, H, B]
    ggml_tensor* q = site.scores->src[1];  // [dh, N, H, B]
    ggml_tensor* vt = site.weighted->src[0];
    float params[2];
    std::memcpy(params, site.softmax->op_params, sizeof(params));  // scale, max_bias
    const int64_t n = q->ne[1];
    ggml_tensor* acc = nullptr;
    ggml_tensor* last = nullptr;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t n0 = n * c / chunks, n1 = n * (c + 1) / chunks;
      ggml_tensor* qc = ggml_view_4d(ctx, q, q->ne[0], n1 - n0, q->ne[2], q->ne[3], q->nb[1], q->nb[2], q->nb[3], n0 * q->nb[1]);
      ggml_tensor* p = ggml_soft_max_ext(ctx, ggml_mul_mat(ctx, k, qc), nullptr, params[0], params[1]);  // [M, n, H, B]
      ggml_tensor* o = ggml_mul_mat(ctx, vt, p);                                                          // [dh, n, H, B]
      if (last) acc = acc ? ggml_concat(ctx, acc, last, 1) : last;
      last = o;
    }
    if (!acc) continue;  // one chunk: nothing to change
    // V·scores becomes the concatenation in place, so its users need no rewiring.
    ggml_tensor* w = site.weighted;
    w->op = GGML_OP_CONCAT;
    std::memset(w->op_params, 0, sizeof(w->op_params));
    const int32_t dim = 1;
    std::memcpy(w->op_params, &dim, sizeof(dim));
    std::fill(std::begin(w->src), std::end(w->src), nullptr);
    w->src[0] = acc;
    w->src[1] = last;
  }
  return true;
}

// Stage k of the network for one input size: cut k − 1's tensors turned into inputs, every
// GroupNorm before k normalising with given statistics ((x − mean) · rstd, the node rewired in
// place so its users need no change), and cut k's tensors that are not carried over as outputs.
struct StageGraph {
  NetGraph net;
  std::vector<ggml_tensor*> inputs;                           // cut k − 1's tensors, or the network input
  std::vector<ggml_tensor*> outputs;                          // index-aligned with cuts[k] (null: carried), or {out}
  std::vector<std::pair<ggml_tensor*, ggml_tensor*>> norms;  // mean, rstd of GroupNorm j < k
  bool sliced = true;  // the attention takes the slices asked for
};

StageGraph stage_graph(const TileGraph& net, const Plan& plan, size_t k, int width, int height, int channels,
                       int64_t attention_chunks = 1) {
  StageGraph s;
  s.net = build_net(net, width, height, channels);
  const std::vector<ggml_tensor*>& order = s.net.order;
  ggml_context* ctx = s.net.g->ctx;
  if (order.size() != plan.nodes) fail(ErrorCode::Internal, "the VAE graph differs between tile sizes");
  for (size_t j = 0; j < k; ++j) {
    ggml_tensor* node = order[plan.norms[j].pos];
    ggml_tensor* x = node->src[0];
    ggml_tensor* mean = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, 1, 1, x->ne[2], 1);
    ggml_tensor* rstd = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, 1, 1, x->ne[2], 1);
    ggml_set_input(mean);
    ggml_set_input(rstd);
    ggml_tensor* centered = ggml_sub(ctx, x, mean);
    node->op = GGML_OP_MUL;
    std::memset(node->op_params, 0, sizeof(node->op_params));
    node->src[0] = centered;
    node->src[1] = rstd;
    s.norms.push_back({mean, rstd});
  }
  if (k == 0) {
    s.inputs.push_back(s.net.in);
  } else {
    for (size_t p : plan.cuts[k - 1]) {
      ggml_tensor* t = order[p];
      t->op = GGML_OP_NONE;  // a leaf now: its data comes from the whole-image buffer
      std::memset(t->op_params, 0, sizeof(t->op_params));
      std::fill(std::begin(t->src), std::end(t->src), nullptr);
      ggml_set_input(t);
      s.inputs.push_back(t);
    }
  }
  if (k == plan.norms.size()) {
    s.outputs.push_back(s.net.out);
  } else {
    for (size_t i = 0; i < plan.cuts[k].size(); ++i) {
      s.outputs.push_back(plan.carried[k][i] < 0 ? order[plan.cuts[k][i]] : nullptr);
    }
  }
  if (attention_chunks > 1) s.sliced = chunk_attention(ctx, order, attention_chunks);
  for (ggml_tensor* t : s.outputs) {
    if (!t) continue;
    ggml_set_output(t);
    ggml_build_forward_expand(s.net.g->graph, t);
  }
  return s;
}

// Compute-buffer bytes the graph would take on the runtime's device (measured, not allocated).
double graph_bytes(Runtime& runtime, ggml_cgraph* graph) {
  ggml_gallocr_t galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(runtime.backend()));
  if (!galloc) fail(ErrorCode::Resource, "could not create a graph allocator");
  size_t bytes = 0;
  ggml_gallocr_reserve_n_size(galloc, graph, nullptr, nullptr, &bytes);
  ggml_gallocr_free(galloc);
  return double(bytes);
}

// Runs the stage on `inputs` (index-aligned with s.inputs); returns its outputs (empty where
// carried over).
std::vector<Latent> run_stage(Runtime& runtime, StageGraph& s, const std::vector<Latent>& inputs,
                              const std::vector<NormStats>& stats, const JobControl& job) {
  job.throw_if_cancelled();
  ResetOnExit reset{runtime};
  runtime.allocate(s.net.g->graph);
  // Inputs the stage does not read (carried straight over, GroupNorms of earlier stages) are
  // not in its graph and have no buffer.
  const auto set = [](ggml_tensor* t, const std::vector<float>& v) {
    if (!t->buffer) return;
    if (size_t(ggml_nelements(t)) != v.size()) fail(ErrorCode::Internal, "a VAE stage input has another size");
    ggml_backend_tensor_set(t, v.data(), 0, v.size() * sizeof(float));
  };
  for (size_t i = 0; i < s.inputs.size(); ++i) set(s.inputs[i], inputs[i].data);
  for (size_t j = 0; j < s.norms.size(); ++j) {
    set(s.norms[j].first, stats[j].mean);
    set(s.norms[j].second, stats[j].rstd);
  }
  runtime.compute(s.net.g->graph, job, 0);
  std::vector<Latent> out;
  for (ggml_tensor* t : s.outputs) out.push_back(t ? read_latent(t) : Latent{});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Whole-image buffers

Latent crop(const Latent& from, size_t x0, size_t y0, int width, int height) {
  Latent in;
  in.channels = from.channels;
  in.width = width;
  in.height = height;
  in.data.resize(size_t(in.channels) * width * height);
  const size_t plane = size_t(from.width) * size_t(from.height);
  for (int c = 0; c < in.channels; ++c) {
    for (int y = 0; y < height; ++y) {
      const float* src = from.data.data() + c * plane + (y0 + y) * from.width + x0;
      std::copy(src, src + width, in.data.data() + (size_t(c) * height + y) * width);
    }
  }
  return in;
}

// A tile's output put into the whole-image buffer `to` (allocated on first use): the region
// [x0, x0 + w) × [y0, y0 + h) of the tile, placed at its offset (ox, oy) in the image.
// With weights, accumulated as weight · value (their sum in `weight_sum`), else copied.
void place(const Latent& tile, Latent& to, size_t image_w, size_t image_h, size_t ox, size_t oy, size_t x0, size_t y0,
           size_t w, size_t h, const std::vector<float>* wx, const std::vector<float>* wy, std::vector<float>& weight_sum) {
  if (to.data.empty()) {
    to.channels = tile.channels;
    to.width = static_cast<int>(image_w);
    to.height = static_cast<int>(image_h);
    to.data.assign(size_t(tile.channels) * image_w * image_h, 0.0f);
    if (wx) weight_sum.assign(image_w * image_h, 0.0f);
  }
  if (tile.channels != to.channels) fail(ErrorCode::Internal, "VAE tiles differ in their channels");
  const size_t plane = image_w * image_h, tile_plane = size_t(tile.width) * size_t(tile.height);
  for (size_t y = y0; y < y0 + h; ++y) {
    const size_t row = (oy + y) * image_w + ox;
    if (wx) {
      for (size_t x = x0; x < x0 + w; ++x) weight_sum[row + x] += (*wy)[y] * (*wx)[x];
    }
    for (int c = 0; c < tile.channels; ++c) {
      const float* src = tile.data.data() + c * tile_plane + y * tile.width;
      float* dst = to.data.data() + c * plane + row;
      if (wx) {
        for (size_t x = x0; x < x0 + w; ++x) dst[x] += (*wy)[y] * (*wx)[x] * src[x];
      } else {
        std::copy(src + x0, src + x0 + w, dst + x0);
      }
    }
  }
}

// Units per latent cell of a tile's tensor; Internal unless whole and the same along both axes.
int per_cell(const Latent& t, int cells_w, int cells_h) {
  if (t.width % cells_w != 0 || t.height % cells_h != 0 || t.width / cells_w != t.height / cells_h) {
    fail(ErrorCode::Internal, "a VAE activation between latent cells");
  }
  return t.width / cells_w;
}

// Elements the host holds at once: two consecutive cuts over the whole image, `scale` times the
// tile's.
double host_elements(const NetGraph& probe, const Plan& plan, double scale) {
  double previous = 0, peak = 0;
  for (const std::vector<size_t>& cut : plan.cuts) {
    double elements = 0;
    for (size_t p : cut) elements += double(ggml_nelements(probe.order[p])) * scale;
    peak = std::max(peak, previous + elements);
    previous = elements;
  }
  return peak;
}

void check_host_size(double elements) {
  check_intermediate_size(elements, "the image is too large to tile: the activations crossing one GroupNorm would not fit");
}

}  // namespace

void check_tiled_size(int cells_w, int cells_h, const VaeTiling& tiling, int in_per_cell, int channels,
                      const GraphBuild& build, const char* input_name, size_t max_nodes) {
  check_tiling(tiling);
  const std::vector<TileSpan> xs = tile_spans(cells_w, tiling.tile, tiling.overlap);
  const std::vector<TileSpan> ys = tile_spans(cells_h, tiling.tile, tiling.overlap);
  if (xs.size() * ys.size() == 1) return;  // runs untiled
  const TileGraph net{build, input_name, max_nodes};
  const int tile_w = xs[0].size, tile_h = ys[0].size;
  const NetGraph probe = build_net(net, tile_w * in_per_cell, tile_h * in_per_cell, channels);
  check_host_size(host_elements(probe, make_plan(probe, tile_w), double(cells_w) * cells_h / (double(tile_w) * tile_h)));
}

void check_tiling(const VaeTiling& tiling) {
  if (tiling.tile < 1 || tiling.tile > kMaxTile) {
    fail(ErrorCode::InvalidArgument, "the VAE tile must be 1 to " + std::to_string(kMaxTile) + " latent cells, not " +
                                         std::to_string(tiling.tile));
  }
  if (tiling.overlap < 0 || tiling.overlap > tiling.tile / 2) {
    fail(ErrorCode::InvalidArgument, "the VAE tile overlap must be 0 to tile / 2 (" + std::to_string(tiling.tile / 2) +
                                         ") latent cells, not " + std::to_string(tiling.overlap));
  }
}

std::vector<TileSpan> tile_spans(int length, int tile, int overlap) {
  if (length <= tile) return {{0, length}};
  const int stride = tile - overlap;
  std::vector<TileSpan> spans;
  int begin = 0;
  for (; begin + tile < length; begin += stride) spans.push_back({begin, tile});
  spans.push_back({length - tile, tile});  // the last one flush with the end
  return spans;
}

Latent run_tiled(Runtime& runtime, const Latent& input, const VaeTiling& tiling, int in_per_cell, int out_per_cell,
                 const GraphBuild& build, const char* input_name, size_t max_nodes, const JobControl& job) {
  check_tiling(tiling);
  const int cells_w = input.width / in_per_cell, cells_h = input.height / in_per_cell;
  if (cells_w < 1 || cells_h < 1 || cells_w * in_per_cell != input.width || cells_h * in_per_cell != input.height) {
    fail(ErrorCode::Internal, "a tiled input must be whole latent cells");
  }
  const std::vector<TileSpan> xs = tile_spans(cells_w, tiling.tile, tiling.overlap);
  const std::vector<TileSpan> ys = tile_spans(cells_h, tiling.tile, tiling.overlap);
  // The stages' own progress (graph chunks) stays out of the job's: it reports tiles.
  const JobControl quiet(&job);
  if (xs.size() * ys.size() == 1) {  // one tile: the untiled pass
    Latent out = run_planar(runtime, input, input_name, build, max_nodes, 0, quiet);
    job.report(1, 1);
    return out;
  }

  const TileGraph net{build, input_name, max_nodes};
  const int tile_w = xs[0].size, tile_h = ys[0].size;  // every tile is this size
  const std::vector<TileSpan> share_x = span_shares(xs), share_y = span_shares(ys);
  NetGraph probe = build_net(net, tile_w * in_per_cell, tile_h * in_per_cell, input.channels);
  const Plan plan = make_plan(probe, tile_w);
  const size_t stages = plan.norms.size() + 1;
  check_host_size(host_elements(probe, plan, double(cells_w) * cells_h / (double(tile_w) * tile_h)));

  // An attention stage runs over the whole image, its queries in as many slices as keep it
  // within what one full tile pass needs: exact. Where no slicing fits (or the attention has
  // another shape), each tile attends within itself.
  ggml_build_forward_expand(probe.g->graph, probe.out);
  const double tile_bytes = graph_bytes(runtime, probe.g->graph);
  std::vector<int64_t> whole(stages, 0);  // query slices of a whole-image stage; 0: tiled
  for (size_t k = 0; k < stages; ++k) {
    if (!plan.attends[k]) continue;
    const int64_t positions = int64_t(cells_w) * cells_h;
    for (int64_t chunks = 1; chunks <= std::min<int64_t>(positions, kMaxAttentionSlices); chunks *= 2) {
      StageGraph s = stage_graph(net, plan, k, input.width, input.height, input.channels, chunks);
      if (!s.sliced) break;
      if (graph_bytes(runtime, s.net.g->graph) <= tile_bytes) {
        whole[k] = chunks;
        break;
      }
    }
  }
  const int tiles = static_cast<int>(xs.size() * ys.size());
  int steps = 0, done = 0;
  for (size_t k = 0; k < stages; ++k) steps += whole[k] ? 1 : tiles;

  std::vector<Latent> current;  // cut k − 1 over the whole image
  std::vector<NormStats> stats;
  for (size_t k = 0; k < stages; ++k) {
    const bool last = k + 1 == stages;
    // Tiles that attend within themselves (or a network without GroupNorm, run in one stage)
    // disagree near their edges: blend there. Elsewhere each tile's share is exact.
    const bool blend = !whole[k] && (plan.attends[k] || stages == 1);
    // Context around a share: what the stage's convolutions reach, within the tile's overlap.
    const int context = tiling.overlap / 2;
    const int margin = std::isfinite(plan.reach[k]) ? std::min(context, int(std::ceil(plan.reach[k]))) : context;
    const size_t outputs = last ? 1 : plan.cuts[k].size();
    std::vector<Latent> next(outputs);
    std::vector<std::vector<float>> weight_sums(outputs);
    const auto inputs_for = [&](TileSpan sx, TileSpan sy) {
      std::vector<Latent> in;
      if (k == 0) {
        in.push_back(crop(input, size_t(sx.begin) * in_per_cell, size_t(sy.begin) * in_per_cell, sx.size * in_per_cell,
                          sy.size * in_per_cell));
        return in;
      }
      for (const Latent& from : current) {
        const int s = per_cell(from, cells_w, cells_h);
        in.push_back(crop(from, size_t(sx.begin) * s, size_t(sy.begin) * s, sx.size * s, sy.size * s));
      }
      return in;
    };

    if (whole[k]) {
      StageGraph s = stage_graph(net, plan, k, input.width, input.height, input.channels, whole[k]);
      if (!s.sliced) fail(ErrorCode::Internal, "the VAE's attention could not be sliced");
      next = run_stage(runtime, s, inputs_for({0, cells_w}, {0, cells_h}), stats, quiet);
      job.report(++done, steps);
    } else {
      for (size_t ty = 0; ty < ys.size(); ++ty) {
        for (size_t tx = 0; tx < xs.size(); ++tx) {
          // Blended tiles run whole; an exact stage needs only its share and the context its
          // convolutions reach into (at most the tile).
          const TileSpan kx = {xs[tx].begin + share_x[tx].begin, share_x[tx].size};
          const TileSpan ky = {ys[ty].begin + share_y[ty].begin, share_y[ty].size};
          const TileSpan sx = blend ? xs[tx] : around(kx, margin, cells_w);
          const TileSpan sy = blend ? ys[ty] : around(ky, margin, cells_h);
          StageGraph s = stage_graph(net, plan, k, sx.size * in_per_cell, sy.size * in_per_cell, input.channels);
          const std::vector<Latent> out = run_stage(runtime, s, inputs_for(sx, sy), stats, quiet);
          for (size_t i = 0; i < outputs; ++i) {
            if (out[i].data.empty()) continue;  // carried over
            const int u = per_cell(out[i], sx.size, sy.size);
            const size_t image_w = size_t(cells_w) * u, image_h = size_t(cells_h) * u;
            const size_t ox = size_t(sx.begin) * u, oy = size_t(sy.begin) * u;
            if (blend) {
              const std::vector<float> wx = span_weights(xs, tx, u), wy = span_weights(ys, ty, u);
              place(out[i], next[i], image_w, image_h, ox, oy, 0, 0, out[i].width, out[i].height, &wx, &wy, weight_sums[i]);
            } else {
              place(out[i], next[i], image_w, image_h, ox, oy, size_t(kx.begin - sx.begin) * u, size_t(ky.begin - sy.begin) * u,
                    size_t(kx.size) * u, size_t(ky.size) * u, nullptr, nullptr, weight_sums[i]);
            }
          }
          job.report(++done, steps);
        }
      }
    }
    for (size_t i = 0; i < outputs; ++i) {
      if (!weight_sums[i].empty()) {
        const size_t plane = weight_sums[i].size();
        for (int c = 0; c < next[i].channels; ++c) {
          float* p = next[i].data.data() + c * plane;
          for (size_t j = 0; j < plane; ++j) p[j] /= weight_sums[i][j];
        }
      }
      if (!last && plan.carried[k][i] >= 0) next[i] = std::move(current[plan.carried[k][i]]);
    }
    if (!last) stats.push_back(norm_stats(next[plan.norms[k].input], plan.norms[k].groups, plan.norms[k].eps));
    current = std::move(next);
  }
  if (per_cell(current[0], cells_w, cells_h) != out_per_cell) fail(ErrorCode::Internal, "the VAE's tiled output has another scale");
  return std::move(current[0]);
}

}  // namespace sdn
