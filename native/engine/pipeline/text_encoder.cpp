// Model::encode_tokens: the CLIP text encoder over all prompt windows in one batch.
#include <algorithm>
#include <string>

#include "core/error.h"
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
  if (params.embeddings.size() % static_cast<size_t>(encoder.width) != 0) {
    fail(ErrorCode::InvalidArgument, std::to_string(params.embeddings.size()) + " embedding values are no whole vectors of the text encoder's width " +
                                         std::to_string(encoder.width));
  }
  const int64_t extra_rows = static_cast<int64_t>(params.embeddings.size()) / encoder.width;
  encoder.check_inputs(ids, windows, params.clip_skip, extra_rows);
  // Ids past the vocabulary name embedding vectors: the token lookup reads a valid row there
  // (row 0), which the substitution then overwrites.
  std::vector<int32_t> lookup_ids = ids;
  std::vector<int32_t> substituted_at;
  std::vector<float> substituted_rows;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < encoder.vocab) continue;
    const auto row = params.embeddings.begin() + static_cast<std::ptrdiff_t>((ids[i] - encoder.vocab) * encoder.width);
    substituted_rows.insert(substituted_rows.end(), row, row + encoder.width);
    substituted_at.push_back(static_cast<int32_t>(i));
    lookup_ids[i] = 0;
  }
  check_intermediate_size(encoder.activation_elements(windows),
                          std::to_string(windows) + " prompt windows are too many to encode at once");

  GraphContext g(encoder.graph_nodes());
  ggml_tensor* in = ggml_new_tensor_2d(g.ctx, GGML_TYPE_I32, encoder.positions, windows);  // [positions, windows]
  ggml_set_name(in, "clip.ids");
  ggml_set_input(in);
  ClipTextEncoder::Substitution substitution;
  if (!substituted_at.empty()) {
    const int64_t m = static_cast<int64_t>(substituted_at.size());
    substitution.rows = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, encoder.width, m);  // [width, m]
    substitution.at = ggml_new_tensor_1d(g.ctx, GGML_TYPE_I32, m);                   // [m]
    ggml_set_name(substitution.rows, "clip.embedding_rows");
    ggml_set_name(substitution.at, "clip.embedding_at");
    ggml_set_input(substitution.rows);
    ggml_set_input(substitution.at);
  }
  // CLIP pools at the EOS token, the vocabulary's last id: the argmax of each window's ids,
  // embedding placeholders aside (the webui keeps the words' own ids there, all below EOS).
  std::vector<int32_t> eos(params.pooled ? windows : 0);
  ggml_tensor* eos_rows = nullptr;
  if (params.pooled) {
    for (int w = 0; w < windows; ++w) {
      const auto window = ids.begin() + static_cast<std::ptrdiff_t>(w) * encoder.positions;
      const auto at = std::max_element(window, window + encoder.positions,
                                        [&](int32_t a, int32_t b) { return (a < encoder.vocab ? a : -1) < (b < encoder.vocab ? b : -1); }) -
                      window;
      eos[w] = static_cast<int32_t>(w * encoder.positions + at);
    }
    eos_rows = ggml_new_tensor_1d(g.ctx, GGML_TYPE_I32, windows);
    ggml_set_name(eos_rows, "clip.eos_rows");
    ggml_set_input(eos_rows);
  }
  const ClipTextEncoder::Outputs out = encoder.build(g.ctx, in, params.clip_skip, params.final_norm, eos_rows,
                                                              substitution.rows ? &substitution : nullptr);
  ggml_set_output(out.hidden);
  ggml_build_forward_expand(g.graph, out.hidden);
  if (out.pooled) {
    ggml_set_output(out.pooled);
    ggml_build_forward_expand(g.graph, out.pooled);
  }

  Runtime& rt = runtime();
  ResetOnExit reset{rt};
  rt.allocate(g.graph);
  ggml_backend_tensor_set(in, lookup_ids.data(), 0, lookup_ids.size() * sizeof(int32_t));
  if (substitution.rows) {
    ggml_backend_tensor_set(substitution.rows, substituted_rows.data(), 0, substituted_rows.size() * sizeof(float));
    ggml_backend_tensor_set(substitution.at, substituted_at.data(), 0, substituted_at.size() * sizeof(int32_t));
  }
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
