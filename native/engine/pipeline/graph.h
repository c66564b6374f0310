// Running graphs on a runtime: a ggml context for one forward graph's tensor metadata (the data
// lives in the runtime's backend buffers), the size limit stages check before asking ggml for
// buffers, and the one-input, one-output pass the autoencoders make.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "core/error.h"
#include "core/job_control.h"
#include "ggml.h"
#include "nn/op_split.h"
#include "pipeline/backend.h"
#include "pipeline/image.h"

namespace sdn {

struct GraphContext {
  ggml_context* ctx = nullptr;
  ggml_cgraph* graph = nullptr;

  // `max_nodes`: the builder's estimate. `split_large_ops`: room for, and leave to, split ops
  // that would run for seconds into pieces (nn/op_split.h) — for graphs computed on the CPU,
  // where a cancel request is seen between nodes only.
  explicit GraphContext(size_t max_nodes, bool split_large_ops = false) {
    const size_t capacity = max_nodes + (split_large_ops ? kSplitTensors : 0);
    ggml_init_params params{};
    params.mem_size = ggml_tensor_overhead() * capacity + ggml_graph_overhead_custom(capacity, false);
    params.no_alloc = true;
    ctx = ggml_init(params);
    if (!ctx) fail(ErrorCode::Resource, "could not allocate a graph context");
    graph = ggml_new_graph_custom(ctx, capacity, false);
    if (split_large_ops) split = std::make_unique<SplitAllowance>(ctx, kSplitTensors);
  }
  ~GraphContext() {
    split.reset();
    ggml_free(ctx);
  }
  GraphContext(const GraphContext&) = delete;
  GraphContext& operator=(const GraphContext&) = delete;

 private:
  std::unique_ptr<SplitAllowance> split;
};

// The largest intermediate a stage may need, in elements (16 GB of f32): past it the job is
// refused before ggml is asked for a buffer it cannot give.
constexpr double kMaxIntermediateElements = 4.0e9;

// Throws Resource with `refusal` unless a stage's estimate `elements` is within the limit (a
// NaN estimate is refused too).
inline void check_intermediate_size(double elements, const std::string& refusal) {
  if (!(elements <= kMaxIntermediateElements)) fail(ErrorCode::Resource, refusal);
}

// Frees the runtime's compute buffers however a stage ends.
struct ResetOnExit {
  Runtime& runtime;
  ~ResetOnExit() { runtime.reset(); }
};

// Compute-buffer bytes the allocator would plan for the graph ending in `out` on `runtime`'s
// device, measured without allocating (weights live in their own buffers: not counted).
double planned_compute_bytes(Runtime& runtime, GraphContext& g, ggml_tensor* out);

// A computed f32 tensor [W, H, C] read back as a planar latent [c][h][w].
Latent read_latent(ggml_tensor* t);

using GraphBuild = std::function<ggml_tensor*(ggml_context* ctx, ggml_tensor* input)>;

// One forward pass of the graph `build` makes from a planar f32 input [c][h][w] (tensor
// `input_name`); the output comes back the same way. Progress in about `progress_steps` steps.
Latent run_planar(Runtime& runtime, const Latent& input, const char* input_name, const GraphBuild& build,
                  size_t max_nodes, int progress_steps, const JobControl& job);

}  // namespace sdn
