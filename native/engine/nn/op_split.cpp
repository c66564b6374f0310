#include "nn/op_split.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "core/error.h"

namespace sdn {

namespace {

// Graph contexts with an allowance, and what is left of it. Graphs are built on job threads,
// several at once: a lock, held for a lookup.
struct Allowances {
  std::mutex mutex;
  std::unordered_map<const ggml_context*, size_t> left;
};

Allowances& allowances() {
  static Allowances* a = new Allowances();  // never destroyed: jobs may outlive statics
  return *a;
}

}  // namespace

double piece_work() {
  static const double work = [] {
    const char* v = std::getenv("SDNODE_SPLIT_WORK");
    const double parsed = v ? std::strtod(v, nullptr) : 0.0;
    return parsed >= 1.0 ? parsed : kPieceWork;
  }();
  return work;
}

SplitAllowance::SplitAllowance(const ggml_context* ctx, size_t tensors) : ctx_(ctx) {
  Allowances& a = allowances();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.left[ctx] = tensors;
}

SplitAllowance::~SplitAllowance() {
  Allowances& a = allowances();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.left.erase(ctx_);
}

namespace {

// plan_pieces, taking the pieces' tensors from the allowance when `take`.
int pieces_for(const ggml_context* ctx, double work, int64_t extent, int tensors_per_piece, bool take) {
  const double per_piece = piece_work();
  if (!(work > per_piece) || extent < 2) return 1;
  const double wanted = std::ceil(work / per_piece);
  int pieces = static_cast<int>(std::min<double>({wanted, double(extent), double(kMaxPieces)}));
  Allowances& a = allowances();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto it = a.left.find(ctx);
  if (it == a.left.end()) return 1;
  pieces = std::min<int64_t>(pieces, int64_t(it->second / size_t(tensors_per_piece)));
  if (pieces < 2) return 1;
  if (take) it->second -= size_t(pieces) * size_t(tensors_per_piece);
  return pieces;
}

}  // namespace

int plan_pieces(const ggml_context* ctx, double work, int64_t extent, int tensors_per_piece) {
  return pieces_for(ctx, work, extent, tensors_per_piece, true);
}

int peek_pieces(const ggml_context* ctx, double work, int64_t extent, int tensors_per_piece) {
  return pieces_for(ctx, work, extent, tensors_per_piece, false);
}

bool reserve_piece_tensors(const ggml_context* ctx, size_t tensors) {
  Allowances& a = allowances();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto it = a.left.find(ctx);
  if (it == a.left.end() || it->second < tensors) return false;
  it->second -= tensors;
  return true;
}

PieceAssembler::PieceAssembler(const int64_t (&whole_ne)[4], int dim) : dim_(dim) {
  std::copy(whole_ne, whole_ne + 4, ne_);
}

bool PieceAssembler::fits() const {
  // ggml_set keeps nb1..nb3 and the byte offset as int32: the per-slice strides must fit.
  double nb = sizeof(float);
  for (int d = 0; d < 3; ++d) nb *= double(ne_[d]);  // nb3, the largest stride
  return nb < double(INT_MAX);
}

void PieceAssembler::add(ggml_context* ctx, ggml_tensor* piece) {
  if (piece->type != GGML_TYPE_F32) fail(ErrorCode::Internal, "split op pieces must be f32");
  const int64_t len = piece->ne[dim_];
  if (!whole_ && len < ne_[dim_] && reserve_piece_tensors(ctx, 2)) {
    // The whole result's buffer, filled with copies of the piece's first slice (ggml_repeat
    // copies rows), then every piece set into it. ggml_pad of the first piece, which did both at
    // once, goes an element at a time: 11% of a VAE decode's time.
    int64_t ne[4] = {piece->ne[0], piece->ne[1], piece->ne[2], piece->ne[3]};
    ne[dim_] = 1;
    ggml_tensor* slice = ggml_view_4d(ctx, piece, ne[0], ne[1], ne[2], ne[3], piece->nb[1], piece->nb[2], piece->nb[3], 0);
    whole_ = ggml_repeat_4d(ctx, slice, ne_[0], ne_[1], ne_[2], ne_[3]);
  }
  if (!whole_) {
    int pad[4] = {0, 0, 0, 0};
    pad[dim_] = static_cast<int>(ne_[dim_] - len);
    whole_ = pad[dim_] > 0 ? ggml_pad(ctx, piece, pad[0], pad[1], pad[2], pad[3]) : piece;
  } else {
    whole_ = ggml_set_inplace(ctx, whole_, piece, whole_->nb[1], whole_->nb[2], whole_->nb[3],
                              size_t(next_) * whole_->nb[dim_]);
  }
  next_ += len;
}

}  // namespace sdn
