// Running graphs on a runtime: a ggml context for one forward graph's tensor metadata (the data
// lives in the runtime's backend buffers), the size limit stages check before asking ggml for
// buffers, and the one-input, one-output pass the autoencoders make.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/job_control.h"
#include "ggml.h"
#include "pipeline/backend.h"
#include "pipeline/image.h"

namespace sdn {

struct GraphContext {
  ggml_context* ctx = nullptr;
  ggml_cgraph* graph = nullptr;

  explicit GraphContext(size_t max_nodes) {
    ggml_init_params params{};
    params.mem_size = ggml_tensor_overhead() * max_nodes + ggml_graph_overhead_custom(max_nodes, false);
    params.no_alloc = true;
    ctx = ggml_init(params);
    if (!ctx) fail(ErrorCode::Resource, "could not allocate a graph context");
    graph = ggml_new_graph_custom(ctx, max_nodes, false);
  }
  ~GraphContext() { ggml_free(ctx); }
  GraphContext(const GraphContext&) = delete;
  GraphContext& operator=(const GraphContext&) = delete;
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

// A computed f32 tensor [W, H, C] read back as a planar latent [c][h][w].
Latent read_latent(ggml_tensor* t);

using GraphBuild = std::function<ggml_tensor*(ggml_context* ctx, ggml_tensor* input)>;

// One forward pass of the graph `build` makes from a planar f32 input [c][h][w] (tensor
// `input_name`); the output comes back the same way. Progress in about `progress_steps` steps.
Latent run_planar(Runtime& runtime, const Latent& input, const char* input_name, const GraphBuild& build,
                  size_t max_nodes, int progress_steps, const JobControl& job);

}  // namespace sdn
