#include "nn/clip_text.h"

#include <algorithm>

#include "core/error.h"
#include "nn/attention.h"

namespace sdn {

namespace {

constexpr float kLayerNormEps = 1e-5f;  // transformers' CLIPTextConfig.layer_norm_eps
constexpr float kQuickGeluCoef = 1.702f;

void expect_linear(const std::string& name, const Linear& l, int64_t in, int64_t out) {
  expect_dim("input width of '" + name + ".weight'", l.in_features(), in);
  expect_dim("output width of '" + name + ".weight'", l.out_features(), out);
  if (!l.bias) fail(ErrorCode::ModelCompatibility, "the model has no tensor '" + name + ".bias'");
}

LayerNorm load_norm(WeightLookup& w, const std::string& name, int64_t width) {
  LayerNorm n = LayerNorm::load(w, name, kLayerNormEps);
  expect_dim("length of '" + name + ".weight'", n.weight->ne[0], width);
  return n;
}

}  // namespace

ClipTextEncoder ClipTextEncoder::load(WeightLookup& w, const std::string& prefix, int heads, bool quick_gelu) {
  ClipTextEncoder e;
  e.quick_gelu = quick_gelu;

  const std::string tok = prefix + "embeddings.token_embedding.weight";
  const std::string pos = prefix + "embeddings.position_embedding.weight";
  e.token_embedding = w.require(tok, 2);
  e.position_embedding = w.require(pos, 2);
  e.width = e.token_embedding->ne[0];
  e.vocab = e.token_embedding->ne[1];
  e.positions = e.position_embedding->ne[1];
  expect_dim("width of '" + pos + "'", e.position_embedding->ne[0], e.width);
  // Added to the f32 token embeddings after a cast, which ggml has for float types only.
  const ggml_type pt = e.position_embedding->type;
  if (pt != GGML_TYPE_F32 && pt != GGML_TYPE_F16 && pt != GGML_TYPE_BF16) {
    fail(ErrorCode::ModelCompatibility,
         "'" + pos + "' is " + ggml_type_name(pt) + "; the text encoder needs it in f32, f16 or bf16");
  }

  if (heads < 0) fail(ErrorCode::InvalidArgument, "the head count must be positive");
  if (heads == 0) {
    if (e.width % 64 != 0) {
      // A file without the heads in its metadata, of a width the family's 64-wide heads do not fit.
      fail(ErrorCode::ModelCompatibility, "the text encoder's width " + std::to_string(e.width) +
                                              " is not a multiple of 64 and the file does not say its head count "
                                              "(sdnode.attention_heads metadata)");
    }
    heads = static_cast<int>(e.width / 64);
  }
  if (e.width % heads != 0) {
    fail(ErrorCode::InvalidArgument, "the text encoder's width " + std::to_string(e.width) + " does not split into " +
                                         std::to_string(heads) + " heads");
  }
  e.heads = heads;

  for (int i = 0;; ++i) {
    const std::string p = prefix + "encoder.layers." + std::to_string(i) + ".";
    if (!w.has(p + "layer_norm1.weight")) break;
    ClipTextLayer l;
    l.ln1 = load_norm(w, p + "layer_norm1", e.width);
    l.q_proj = Linear::load(w, p + "self_attn.q_proj");
    l.k_proj = Linear::load(w, p + "self_attn.k_proj");
    l.v_proj = Linear::load(w, p + "self_attn.v_proj");
    l.out_proj = Linear::load(w, p + "self_attn.out_proj");
    l.ln2 = load_norm(w, p + "layer_norm2", e.width);
    l.fc1 = Linear::load(w, p + "mlp.fc1");
    l.fc2 = Linear::load(w, p + "mlp.fc2");
    if (i == 0) e.intermediate = l.fc1.out_features();
    expect_linear(p + "self_attn.q_proj", l.q_proj, e.width, e.width);
    expect_linear(p + "self_attn.k_proj", l.k_proj, e.width, e.width);
    expect_linear(p + "self_attn.v_proj", l.v_proj, e.width, e.width);
    expect_linear(p + "self_attn.out_proj", l.out_proj, e.width, e.width);
    expect_linear(p + "mlp.fc1", l.fc1, e.width, e.intermediate);
    expect_linear(p + "mlp.fc2", l.fc2, e.intermediate, e.width);
    e.layers.push_back(l);
  }
  if (e.layers.empty()) {
    fail(ErrorCode::ModelCompatibility, "the model has no tensor '" + prefix + "encoder.layers.0.layer_norm1.weight'");
  }
  e.final_norm = load_norm(w, prefix + "final_layer_norm", e.width);
  if (w.has(prefix + "text_projection")) {
    e.text_projection = w.require(prefix + "text_projection", 2);
    expect_dim("input width of '" + prefix + "text_projection'", e.text_projection->ne[0], e.width);
  }
  return e;
}

void ClipTextEncoder::check_inputs(const std::vector<int32_t>& ids, int windows, int clip_skip, int64_t extra_rows) const {
  if (windows < 1) fail(ErrorCode::InvalidArgument, "windows must be at least 1");
  if (static_cast<int64_t>(ids.size()) != static_cast<int64_t>(windows) * positions) {
    fail(ErrorCode::InvalidArgument, "expected " + std::to_string(windows) + " × " + std::to_string(positions) +
                                         " token ids, got " + std::to_string(ids.size()));
  }
  if (clip_skip < 1 || clip_skip > layer_count()) {
    fail(ErrorCode::InvalidArgument, "clip_skip must be from 1 to " + std::to_string(layer_count()) + ", not " +
                                         std::to_string(clip_skip));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab + extra_rows) {
      fail(ErrorCode::InvalidArgument, "token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                                           " is outside the vocabulary [0, " + std::to_string(vocab) + ")" +
                                           (extra_rows > 0 ? " and the " + std::to_string(extra_rows) + " embedding vectors after it"
                                                           : std::string()));
    }
  }
}

double ClipTextEncoder::activation_elements(int windows) const {
  const double per_window = static_cast<double>(positions) *
                            std::max<double>(static_cast<double>(std::max(intermediate, width)),
                                             static_cast<double>(heads) * static_cast<double>(positions));
  return per_window * windows;
}

ClipTextEncoder::Outputs ClipTextEncoder::build(ggml_context* ctx, ggml_tensor* ids, int clip_skip, bool norm_hidden,
                                                ggml_tensor* eos_rows, const Substitution* substitution) const {
  const int64_t n = ids->ne[0];  // positions
  const int64_t b = ids->ne[1];  // windows
  if (ids->type != GGML_TYPE_I32 || n < 1 || n > positions || ids->ne[2] != 1 || ids->ne[3] != 1) {
    fail(ErrorCode::Internal, "the text encoder takes I32 ids [<= " + std::to_string(positions) + ", windows]");
  }
  if (clip_skip < 1 || clip_skip > layer_count()) {
    fail(ErrorCode::InvalidArgument, "clip_skip must be from 1 to " + std::to_string(layer_count()));
  }

  // Embeddings: token rows + position rows.
  ggml_tensor* x = ggml_get_rows(ctx, token_embedding, ggml_reshape_1d(ctx, ids, n * b));  // [width, n·b]
  if (substitution) {
    const Substitution& s = *substitution;
    if (s.rows->type != GGML_TYPE_F32 || s.rows->ne[0] != width || s.at->type != GGML_TYPE_I32 || s.at->ne[0] != s.rows->ne[1])
      fail(ErrorCode::Internal, "token substitution takes F32 rows [width, m] and I32 positions [m]");
    x = ggml_set_rows(ctx, x, s.rows, s.at);  // [width, n·b]
  }
  x = ggml_reshape_3d(ctx, x, width, n, b);                                                  // [width, n, b]
  ggml_tensor* pos = position_embedding;                                                     // [width, positions]
  if (pos->type != GGML_TYPE_F32) pos = ggml_cast(ctx, pos, GGML_TYPE_F32);
  if (n != positions) pos = ggml_view_2d(ctx, pos, width, n, pos->nb[1], 0);  // [width, n]
  x = ggml_add(ctx, x, pos);                                                  // [width, n, b]
  ggml_format_name(x, "clip.embeddings");

  if (eos_rows && !text_projection) {
    fail(ErrorCode::ModelCompatibility, "the text encoder has no text_projection to pool its output through");
  }
  const int hidden_layer = layer_count() - clip_skip;  // webui: hidden_states[-clip_skip]
  const int run = eos_rows ? layer_count() : hidden_layer + 1;  // pooling takes the last layer
  Outputs out;
  for (int i = 0; i < run; ++i) {
    const ClipTextLayer& l = layers[i];
    // Self-attention, pre-norm, causal.
    ggml_tensor* h = layer_norm(ctx, l.ln1, x);  // [width, n, b]
    ggml_tensor* q = linear(ctx, l.q_proj, h);   // [width, n, b]
    ggml_tensor* k = linear(ctx, l.k_proj, h);   // [width, n, b]
    ggml_tensor* v = linear(ctx, l.v_proj, h);   // [width, n, b]
    h = multihead_attention(ctx, q, k, v, heads, /*causal=*/true);  // [width, n, b]
    h = linear(ctx, l.out_proj, h);                                  // [width, n, b]
    ggml_format_name(h, "clip.layer%d.attn", i);
    x = ggml_add(ctx, x, h);

    // MLP, pre-norm.
    h = layer_norm(ctx, l.ln2, x);  // [width, n, b]
    h = linear(ctx, l.fc1, h);      // [intermediate, n, b]
    if (quick_gelu) {
      // x·σ(1.702x), composed: ggml's gelu_quick reads an f16 table on the CPU (~1e-3 off).
      h = ggml_mul(ctx, h, ggml_sigmoid(ctx, ggml_scale(ctx, h, kQuickGeluCoef)));
    } else {
      h = ggml_gelu_erf(ctx, h);  // torch's default GELU (erf), not the tanh approximation
    }
    h = linear(ctx, l.fc2, h);  // [width, n, b]
    ggml_format_name(h, "clip.layer%d.mlp", i);
    x = ggml_add(ctx, x, h);    // [width, n, b]
    ggml_format_name(x, "clip.layer%d.out", i);
    if (i == hidden_layer) {
      out.hidden = norm_hidden ? layer_norm(ctx, final_norm, x) : x;  // [width, n, b]
      ggml_format_name(out.hidden, "clip.out");
    }
  }
  if (eos_rows) {
    ggml_tensor* last = layer_norm(ctx, final_norm, x);                       // [width, n, b]
    ggml_tensor* eos = ggml_get_rows(ctx, ggml_reshape_2d(ctx, last, width, n * b), eos_rows);  // [width, b]
    out.pooled = ggml_mul_mat(ctx, text_projection, eos);                             // [proj, b]
    ggml_format_name(out.pooled, "clip.pooled");
  }
  return out;
}

}  // namespace sdn
