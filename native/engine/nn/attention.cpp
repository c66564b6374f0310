#include "nn/attention.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "ggml-backend.h"
#include "nn/op_split.h"

namespace sdn {

namespace {

// Tensors a piece of the plain path takes: the query view, scores, softmax, weighted sum,
// permute, cont, the write into the result, with room to spare.
constexpr int kPlainTensorsPerPiece = 9;

enum class FlashSetting { Auto, Off, On };

FlashSetting flash_setting_from_environment() {
  const char* v = std::getenv("SDNODE_FLASH_ATTENTION");
  if (!v) return FlashSetting::Auto;
  if (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0) return FlashSetting::Off;
  if (std::strcmp(v, "1") == 0 || std::strcmp(v, "on") == 0 || std::strcmp(v, "true") == 0) return FlashSetting::On;
  return FlashSetting::Auto;
}

bool is_cpu(ggml_backend_t backend) {
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  return dev && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU;
}

// The plain path's scores and their softmax, [M, n, H, B] f32 each, for one piece of queries:
// up to this many bytes the CPU takes the plain path. ggml's CPU flash kernel walks the keys one
// dot product of a head's width (40–160) at a time; the plain path's two products are GEMMs
// (tinyBLAS): an SD1.5 UNet step at 512² took 23.35 s plain against 26.22 s fused, at 256²
// 3.31 against 3.50 s. Past it (4096² images, or a graph without room to split the queries)
// the fused op keeps memory bounded.
constexpr double kPlainScoreBytes = 512.0 * (1 << 20);

// Whether the plain path suits queries n and keys m on a CPU graph: while its pieces' scores
// stay small (above). (GPU flash kernels are faster and need no scores.)
bool plain_preferred(ggml_context* ctx, int64_t n, int64_t m, int64_t heads, int64_t b, double work) {
  const int pieces = peek_pieces(ctx, work, n, kPlainTensorsPerPiece);
  const double rows = std::ceil(double(n) / pieces);
  return 2.0 * sizeof(float) * double(m) * rows * double(heads) * double(b) <= kPlainScoreBytes;
}

// q [dh, N, H, B], k and v [dh, M, H, B] -> [dh, H, N, B]
ggml_tensor* flash(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale) {
  ggml_tensor* out = ggml_flash_attn_ext(ctx, q, k, v, nullptr, scale, 0.0f, 0.0f);
  ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
  return out;
}

// The keys and values the fused op takes on `backend` for these tensors (K and V cast to f16
// where it only takes those), or false when it cannot run it. q [dh, N, H, B], k and v
// [dh, M, H, B] (views).
bool flash_inputs(ggml_context* ctx, ggml_backend_t backend, ggml_tensor* q, ggml_tensor*& k, ggml_tensor*& v,
                  float scale) {
  // Nodes built here to ask the backend stay in the context, outside the graph: metadata only.
  ggml_tensor* probe = flash(ctx, q, k, v, scale);
  if (ggml_backend_supports_op(backend, probe)) return true;
  if (k->type == GGML_TYPE_F16 && v->type == GGML_TYPE_F16) return false;
  // GPU kernels mostly take f16 keys and values only.
  ggml_tensor* k16 = ggml_cast(ctx, k, GGML_TYPE_F16);
  ggml_tensor* v16 = ggml_cast(ctx, v, GGML_TYPE_F16);
  if (!ggml_backend_supports_op(backend, k16) || !ggml_backend_supports_op(backend, v16)) return false;
  if (!ggml_backend_supports_op(backend, flash(ctx, q, k16, v16, scale))) return false;
  k = k16;
  v = v16;
  return true;
}

// Scores, softmax and the weighted sum for queries qh [dh, n, H, B] whose first is query
// `first` of the sequence; vt [M, dh, H, B]. -> [dh, H, n, B]
ggml_tensor* plain(ggml_context* ctx, ggml_tensor* qh, ggml_tensor* kh, ggml_tensor* vt, float scale, bool causal,
                   int64_t first) {
  ggml_tensor* scores = ggml_mul_mat(ctx, kh, qh);  // [M, n, H, B]
  if (causal) scores = ggml_diag_mask_inf(ctx, scores, static_cast<int>(first));
  scores = ggml_soft_max_ext(ctx, scores, nullptr, scale, 0.0f);  // softmax(scale · scores); -inf stays -inf
  ggml_tensor* out = ggml_mul_mat(ctx, vt, scores);               // [dh, n, H, B]
  return ggml_cont(ctx, ggml_permute(ctx, out, 0, 2, 1, 3));      // [dh, H, n, B]
}

// The CPU's GEMM (tinyBLAS) takes inner sizes in multiples of its vector: 16 floats with
// AVX-512, 8 with AVX2; other products fall to ggml's dot products, several times slower. The
// UNet's first-level heads are 40 wide: zeros padded onto queries and keys make K·Q's inner size
// 48 and add exact zeros to every score, so the numbers do not change.
constexpr int64_t kGemmInnerMultiple = 16;

// t [dh, rows, H, B] (any strides) -> contiguous, dh padded with zeros to the multiple above.
ggml_tensor* pad_head_width(ggml_context* ctx, ggml_tensor* t) {
  const int64_t extra = (kGemmInnerMultiple - t->ne[0] % kGemmInnerMultiple) % kGemmInnerMultiple;
  return extra ? ggml_pad(ctx, t, static_cast<int>(extra), 0, 0, 0) : t;
}

// Queries [first, first + n) of qh [dh, N, H, B].
ggml_tensor* query_rows(ggml_context* ctx, ggml_tensor* qh, int64_t first, int64_t n) {
  return ggml_view_4d(ctx, qh, qh->ne[0], n, qh->ne[2], qh->ne[3], qh->nb[1], qh->nb[2], qh->nb[3],
                      size_t(first) * qh->nb[1]);
}

}  // namespace

ggml_tensor* multihead_attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, int heads,
                                 bool causal, const AttentionOptions& options) {
  const int64_t d = q->ne[0], n = q->ne[1], m = k->ne[1], b = q->ne[2];
  const int64_t dh = d / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  // [D, N, B] -> [dh, N, H, B]: one matrix per head.
  ggml_tensor* qh = ggml_permute(ctx, ggml_reshape_4d(ctx, q, dh, heads, n, b), 0, 2, 1, 3);
  ggml_tensor* kh = ggml_permute(ctx, ggml_reshape_4d(ctx, k, dh, heads, m, b), 0, 2, 1, 3);
  ggml_tensor* vh = ggml_permute(ctx, ggml_reshape_4d(ctx, v, dh, heads, m, b), 0, 2, 1, 3);

  const double work = 2.0 * double(n) * double(m) * double(d) * double(b);  // scores and weighted sum
  const FlashSetting setting = flash_setting_from_environment();
  const bool cpu = options.backend && is_cpu(options.backend);
  const bool fused = options.backend && !causal && setting != FlashSetting::Off &&
                     (setting == FlashSetting::On || !cpu || !plain_preferred(ctx, n, m, heads, b, work)) &&
                     flash_inputs(ctx, options.backend, qh, kh, vh, scale);
  // v as [M, dh, H, B], so the weighted sum is one mul_mat.
  ggml_tensor* vt = fused ? nullptr : ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, v, dh, heads, m, b), 1, 2, 0, 3));
  if (!fused && cpu) {
    qh = pad_head_width(ctx, qh);
    kh = pad_head_width(ctx, kh);
  }

  // Each query's output depends on its own row only: split by queries, the pieces compute the
  // same numbers. Tensors per piece: the query view, the op(s), the write into the result.
  const int64_t whole_ne[4] = {dh, heads, n, b};
  PieceAssembler assembler(whole_ne, 2);
  // Fused: pieces of at least 64 queries (ggml's CPU tile; for fewer rows it takes another
  // path, which rounds the queries to f16).
  const int64_t most_pieces = fused ? n / 64 : n;
  const int pieces = assembler.fits() ? plan_pieces(ctx, work, most_pieces, fused ? 3 : kPlainTensorsPerPiece) : 1;

  for (int i = 0; i < pieces; ++i) {
    const int64_t first = piece_start(n, pieces, i), count = piece_start(n, pieces, i + 1) - first;
    ggml_tensor* rows = pieces == 1 ? qh : query_rows(ctx, qh, first, count);
    ggml_tensor* out = fused ? flash(ctx, rows, kh, vh, scale) : plain(ctx, rows, kh, vt, scale, causal, first);
    if (pieces == 1) return ggml_reshape_3d(ctx, out, d, n, b);  // [dh, H, N, B] is [D, N, B]
    assembler.add(ctx, out);
  }
  return ggml_reshape_3d(ctx, assembler.result(), d, n, b);
}

}  // namespace sdn
