// Splitting ops whose one evaluation would run for seconds into pieces that are graph nodes of
// their own. ggml's CPU backend looks at the cancel flag between nodes only: one attention over
// 16,384 tokens (a 2048² image's UNet) is a single node of several seconds, 65,536 tokens (4096²)
// over a minute, and a cancelled job cannot stop inside it. Cut into pieces of bounded work
// (queries for attention, bands of output rows for convolutions), each piece computes exactly
// what the whole op computes for its part, so results do not change.
//
// Splitting is allowed per graph context (SplitAllowance): the pieces' tensors must fit in the
// context and graph the caller sized. Without an allowance ops are built whole; the pipeline
// gives one to graphs that run on the CPU (GPU kernels finish such ops in milliseconds, and the
// pieces' views would meet their alignment rules).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ggml.h"

namespace sdn {

// Work of one piece, in multiply-adds: about 0.3 s on two busy cores (flash attention ran at
// ~14·10⁹ a second there), well under it on more. Smaller pieces cost graph nodes: a 4096²
// image's UNet needs ~4,000 tensors of pieces at this size. SDNODE_SPLIT_WORK (multiply-adds)
// overrides it: small values make tests split tiny ops.
constexpr double kPieceWork = 4.0 * (1u << 30);
double piece_work();
// im2col moves an element for about this many multiply-adds' time (measured on x86: the
// unfolding is memory- and conversion-bound).
constexpr double kIm2colElementWork = 256.0;
// The most pieces one op is cut into, so that one op cannot use the whole allowance.
constexpr int kMaxPieces = 512;
// Tensors a graph context reserves for pieces.
constexpr size_t kSplitTensors = 8192;

// While it lives, graphs built in `ctx` may add up to `tensors` tensors by splitting ops.
class SplitAllowance {
 public:
  SplitAllowance(const ggml_context* ctx, size_t tensors);
  ~SplitAllowance();
  SplitAllowance(const SplitAllowance&) = delete;
  SplitAllowance& operator=(const SplitAllowance&) = delete;

 private:
  const ggml_context* ctx_;
};

// How many pieces an op of `work` multiply-adds should be cut into along an output dimension of
// `extent`, each piece costing `tensors_per_piece` tensors: 1 (do not split) when the op is small,
// or `ctx` has no allowance or too little of it left. Takes the pieces' tensors from the allowance.
int plan_pieces(const ggml_context* ctx, double work, int64_t extent, int tensors_per_piece);
// What plan_pieces would give now, taking nothing (for choosing between ways to build an op).
int peek_pieces(const ggml_context* ctx, double work, int64_t extent, int tensors_per_piece);

// Takes `tensors` more from `ctx`'s allowance (for pieces beyond those plan_pieces gave); false,
// taking nothing, when there is no allowance or not enough left.
bool reserve_piece_tensors(const ggml_context* ctx, size_t tensors);

// Assembles an f32 result from pieces along one dimension, in order: a buffer of the whole
// shape (the first piece's first slice repeated, or, where the allowance has no room for that,
// the first piece zero-padded), then each piece written in place (ggml_set).
class PieceAssembler {
 public:
  // The whole result's shape; pieces follow each other along `dim` (1..3).
  PieceAssembler(const int64_t (&whole_ne)[4], int dim);
  // Whether ggml_set can address a result this large (its strides and offsets are int32).
  bool fits() const;
  void add(ggml_context* ctx, ggml_tensor* piece);
  // The whole result; every piece must have been added.
  ggml_tensor* result() const { return whole_; }

 private:
  int64_t ne_[4];
  int dim_;
  int64_t next_ = 0;
  ggml_tensor* whole_ = nullptr;
};

// Even pieces: the start of piece `i` of `pieces` over `extent`.
inline int64_t piece_start(int64_t extent, int pieces, int i) { return extent * i / pieces; }

}  // namespace sdn
