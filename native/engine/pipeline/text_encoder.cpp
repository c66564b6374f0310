// Model::encode_tokens: the CLIP text encoder over all prompt windows in one batch.
#include <string>

#include "ggml-backend.h"
#include "ggml.h"
#include "nn/clip_text.h"
#include "pipeline/graph.h"
#include "pipeline/model.h"

namespace sdn {

std::vector<float> Model::encode_tokens(const std::vector<int32_t>& ids, int windows, const TextEncoderParams& params,
                                        const JobControl& job) {
  job.throw_if_cancelled();
  const ClipTextEncoder encoder = ClipTextEncoder::load(weight_lookup(), params.prefix, params.heads, params.quick_gelu);
  encoder.check_inputs(ids, windows, params.clip_skip);
  check_intermediate_size(encoder.activation_elements(windows),
                          std::to_string(windows) + " prompt windows are too many to encode at once");

  GraphContext g(encoder.graph_nodes());
  ggml_tensor* in = ggml_new_tensor_2d(g.ctx, GGML_TYPE_I32, encoder.positions, windows);  // [positions, windows]
  ggml_set_name(in, "clip.ids");
  ggml_set_input(in);
  ggml_tensor* out = encoder.build(g.ctx, in, params.clip_skip);  // [width, positions, windows]
  ggml_set_output(out);
  ggml_build_forward_expand(g.graph, out);

  Runtime& rt = runtime();
  ResetOnExit reset{rt};
  rt.allocate(g.graph);
  ggml_backend_tensor_set(in, ids.data(), 0, ids.size() * sizeof(int32_t));
  rt.compute(g.graph, job, encoder.layer_count() - params.clip_skip + 1);

  // ggml's [width, positions, windows] is PyTorch's [windows][positions][width].
  std::vector<float> result(static_cast<size_t>(ggml_nelements(out)));
  ggml_backend_tensor_get(out, result.data(), 0, result.size() * sizeof(float));
  return result;
}

}  // namespace sdn
