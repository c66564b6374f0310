#include "pipeline/graph.h"

#include "ggml-backend.h"

namespace sdn {

Latent run_planar(Runtime& runtime, const Latent& input, const char* input_name, const GraphBuild& build,
                  size_t max_nodes, int progress_steps, const JobControl& job) {
  GraphContext g(max_nodes, runtime.is_cpu());
  ggml_tensor* in = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, input.width, input.height, input.channels, 1);
  ggml_set_name(in, input_name);
  ggml_set_input(in);
  ggml_tensor* out = build(g.ctx, in);
  ggml_set_output(out);
  ggml_build_forward_expand(g.graph, out);

  job.throw_if_cancelled();
  ResetOnExit reset{runtime};
  runtime.allocate(g.graph);
  ggml_backend_tensor_set(in, input.data.data(), 0, input.data.size() * sizeof(float));
  runtime.compute(g.graph, job, progress_steps);

  return read_latent(out);
}

double planned_compute_bytes(Runtime& runtime, GraphContext& g, ggml_tensor* out) {
  ggml_set_output(out);
  ggml_build_forward_expand(g.graph, out);
  return double(runtime.planned_bytes(g.graph));
}

Latent read_latent(ggml_tensor* t) {
  Latent l;
  l.width = static_cast<int>(t->ne[0]);
  l.height = static_cast<int>(t->ne[1]);
  l.channels = static_cast<int>(t->ne[2]);
  l.data.resize(ggml_nelements(t));
  ggml_backend_tensor_get(t, l.data.data(), 0, l.data.size() * sizeof(float));
  return l;
}

}  // namespace sdn
