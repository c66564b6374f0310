// How many CPU threads a graph is worth. ggml's CPU threads meet at a spinning barrier after
// every node, so a graph of many small nodes (a tiny model, a small image's text encoder)
// spends more time in barriers than in work on a second thread — and when the machine's other
// processes hold a core, each barrier waits for a descheduled thread: 64² jobs of a tiny model
// took 10× longer on 2 threads than on 1 beside one busy process. The work per node decides.
#pragma once

#include "ggml.h"

namespace sdn {

// Floating-point operations of one node, roughly: 2·K per output of a matrix product, the
// two products of an attention, one per output element for the rest.
double node_flops(const ggml_tensor* node);

// The threads (1..max_threads) worth giving `graph`: all of them when its nodes average at
// least kFlopsPerNodeForThreads, else one.
int threads_for_graph(ggml_cgraph* graph, int max_threads);

}  // namespace sdn
