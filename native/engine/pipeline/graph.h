// A ggml context holding one forward graph's tensor metadata; the data lives in the runtime's
// backend buffers.
#pragma once

#include <cstddef>

#include "core/error.h"
#include "ggml.h"

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

}  // namespace sdn
