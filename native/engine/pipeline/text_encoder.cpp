// Model::encode_tokens: the CLIP text encoder over all prompt windows in one batch.
#include <algorithm>
#include <string>

#include "ggml-backend.h"
#include "ggml.h"
#include "nn/clip_text.h"
#include "pipeline/graph.h"
#include "pipeline/model.h"

namespace sdn {

TextEncoding Model::encode_tokens(const std::vector<int32_t>& ids, int windows, const TextEncoderParams& params,
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
  // CLIP pools at the EOS token, the vocabulary's last id: the argmax of each window's ids.
  std::vector<int32_t> eos(params.pooled ? windows : 0);
  ggml_tensor* eos_rows = nullptr;
  if (params.pooled) {
    for (int w = 0; w < windows; ++w) {
      const auto window = ids.begin() + static_cast<std::ptrdiff_t>(w) * encoder.positions;
      const auto at = std::max_element(window, window + encoder.positions) - window;
      eos[w] = static_cast<int32_t>(w * encoder.positions + at);
    }
    eos_rows = ggml_new_tensor_1d(g.ctx, GGML_TYPE_I32, windows);
    ggml_set_name(eos_rows, "clip.eos_rows");
    ggml_set_input(eos_rows);
  }
  const ClipTextEncoder::Outputs out = encoder.build(g.ctx, in, params.clip_skip, params.final_norm, eos_rows);
  ggml_set_output(out.hidden);
  ggml_build_forward_expand(g.graph, out.hidden);
  if (out.pooled) {
    ggml_set_output(out.pooled);
    ggml_build_forward_expand(g.graph, out.pooled);
  }

  Runtime& rt = runtime();
  ResetOnExit reset{rt};
  rt.allocate(g.graph);
  ggml_backend_tensor_set(in, ids.data(), 0, ids.size() * sizeof(int32_t));
  if (eos_rows) ggml_backend_tensor_set(eos_rows, eos.data(), 0, eos.size() * sizeof(int32_t));
  rt.compute(g.graph, job, params.pooled ? encoder.layer_count() : encoder.layer_count() - params.clip_skip + 1);

  // ggml's [width, positions, windows] is PyTorch's [windows][positions][width].
  TextEncoding result;
  result.hidden.resize(static_cast<size_t>(ggml_nelements(out.hidden)));
  ggml_backend_tensor_get(out.hidden, result.hidden.data(), 0, result.hidden.size() * sizeof(float));
  if (out.pooled) {
    result.pooled.resize(static_cast<size_t>(ggml_nelements(out.pooled)));
    ggml_backend_tensor_get(out.pooled, result.pooled.data(), 0, result.pooled.size() * sizeof(float));
  }
  return result;
}

}  // namespace sdn
