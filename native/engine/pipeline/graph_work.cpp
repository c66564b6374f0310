#include "pipeline/graph_work.h"

#include <algorithm>

namespace sdn {

namespace {

// About 80 µs of one core's work: below this average a second thread's barriers cost more than
// the work it takes over.
constexpr double kFlopsPerNodeForThreads = 4.0e6;

}  // namespace

double node_flops(const ggml_tensor* node) {
  const double outputs = static_cast<double>(ggml_nelements(node));
  switch (node->op) {
    case GGML_OP_MUL_MAT:
    case GGML_OP_MUL_MAT_ID: return 2.0 * static_cast<double>(node->src[0]->ne[0]) * outputs;
    case GGML_OP_FLASH_ATTN_EXT: {
      // q [dh, n_q, H, B], k [dh, n_kv, H, B]: QKᵀ and the weighted sum of V.
      const ggml_tensor* q = node->src[0];
      const ggml_tensor* k = node->src[1];
      return 4.0 * static_cast<double>(ggml_nelements(q)) * static_cast<double>(k->ne[1]);
    }
    default: return outputs;
  }
}

int threads_for_graph(ggml_cgraph* graph, int max_threads) {
  const int n = ggml_graph_n_nodes(graph);
  if (max_threads <= 1 || n == 0) return std::max(1, max_threads);
  double flops = 0;
  for (int i = 0; i < n; ++i) flops += node_flops(ggml_graph_node(graph, i));
  return flops / n >= kFlopsPerNodeForThreads ? max_threads : 1;
}

}  // namespace sdn
