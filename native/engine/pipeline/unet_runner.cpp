#include "pipeline/unet_runner.h"

#include <cmath>
#include <string>

#include "ggml-backend.h"

namespace sdn {

UnetRunner::UnetRunner(WeightLookup& weights, Runtime& runtime, const UnetShape& shape, const UnetParams& params)
    : runtime_(runtime), shape_(shape), net_(UnetNetwork::load(weights)) {
  net_.check_heads(params.heads, params.head_dim);
  net_.check_shape(shape_.batch, shape_.channels, shape_.height, shape_.width, shape_.context_tokens);
  plain_ = build_graph(params, false);
  if (shape_.residuals) with_residuals_ = build_graph(params, true);
  // The graph a job starts with: with residuals when there are any (a ControlNet active from
  // the first step), else the plain one.
  allocated_ = shape_.residuals ? &with_residuals_ : &plain_;
  runtime_.allocate(allocated_->g->graph);
}

UnetRunner::Graph UnetRunner::build_graph(const UnetParams& params, bool residuals) const {
  Graph r;
  // Every spatial transformer builds its attention twice when the fused op is probed.
  r.g = std::make_unique<GraphContext>(net_.graph_nodes_estimate() * 2, runtime_.is_cpu());
  ggml_context* ctx = r.g->ctx;
  r.x = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, shape_.width, shape_.height, shape_.channels, shape_.batch);
  r.t_freq = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, net_.model_channels(), shape_.batch);
  r.context = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, net_.context_dim(), shape_.context_tokens, shape_.batch);
  ggml_set_name(r.x, "unet.x");
  ggml_set_name(r.t_freq, "unet.t_freq");
  ggml_set_name(r.context, "unet.context");
  for (ggml_tensor* t : {r.x, r.t_freq, r.context}) ggml_set_input(t);
  if (net_.adm_channels() > 0) {
    r.y = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, net_.adm_channels(), shape_.batch);
    ggml_set_name(r.y, "unet.y");
    ggml_set_input(r.y);
  }

  UnetInputs in;
  in.x = r.x;
  in.t_freq = r.t_freq;
  in.context = r.context;
  in.y = r.y;
  if (residuals) {
    // Each input block's output is at its level: channels and sides from the encoder's trace.
    const auto skips = net_.encoder().skips();
    for (size_t i = 0; i <= skips.size(); ++i) {
      const bool middle = i == skips.size();
      const int level = middle ? net_.encoder().trace().level : skips[i].level;
      const int64_t channels = middle ? net_.encoder().trace().channels : skips[i].channels;
      int64_t w = shape_.width, h = shape_.height;
      for (int l = 0; l < level; ++l) w = (w + 1) / 2, h = (h + 1) / 2;  // a stride-2, padding-1 3×3 conv
      ggml_tensor* t = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, w, h, channels, shape_.batch);
      if (middle) ggml_set_name(t, "unet.control.middle");
      else ggml_format_name(t, "unet.control.%zu", i);
      ggml_set_input(t);
      r.residuals.push_back(t);
    }
    in.skip_residuals.assign(r.residuals.begin(), r.residuals.end() - 1);
    in.middle_residual = r.residuals.back();
  }
  AttentionOptions attention;
  attention.backend = runtime_.backend();
  r.out = net_.build(ctx, in, params.heads, params.head_dim, attention);
  ggml_set_output(r.out);
  ggml_build_forward_expand(r.g->graph, r.out);
  return r;
}

UnetRunner::~UnetRunner() { runtime_.reset(); }

size_t UnetRunner::x_size() const {
  return size_t(shape_.batch) * size_t(shape_.channels) * size_t(shape_.height) * size_t(shape_.width);
}

size_t UnetRunner::context_size() const {
  return size_t(shape_.batch) * size_t(shape_.context_tokens) * size_t(net_.context_dim());
}

size_t UnetRunner::y_size() const { return size_t(shape_.batch) * size_t(net_.adm_channels()); }

size_t UnetRunner::out_size() const { return size_t(ggml_nelements(plain_.out)); }

std::vector<float> UnetRunner::run(const std::vector<float>& x, const std::vector<float>& timesteps,
                                   const std::vector<float>& context, const std::vector<float>& y, const JobControl& job,
                                   int progress_steps, const std::vector<std::vector<float>>* residuals) {
  if (x.size() != x_size()) {
    fail(ErrorCode::InvalidArgument, "x has " + std::to_string(x.size()) + " values; batch × channels × height × width is " +
                                         std::to_string(x_size()));
  }
  if (timesteps.size() != size_t(shape_.batch)) {
    fail(ErrorCode::InvalidArgument, "timesteps has " + std::to_string(timesteps.size()) + " values for a batch of " +
                                         std::to_string(shape_.batch));
  }
  for (float t : timesteps) {
    if (!std::isfinite(t)) fail(ErrorCode::InvalidArgument, "timesteps must be finite");
  }
  if (context.size() != context_size()) {
    fail(ErrorCode::InvalidArgument,
         "context has " + std::to_string(context.size()) + " values; batch × tokens × context width (" +
             std::to_string(net_.context_dim()) + ", the model's) is " + std::to_string(context_size()));
  }

  if (y.size() != y_size()) {
    fail(ErrorCode::InvalidArgument, "y has " + std::to_string(y.size()) + " values; batch × the UNet's vector width (" +
                                         std::to_string(net_.adm_channels()) + ") is " + std::to_string(y_size()));
  }

  if (residuals && !shape_.residuals) fail(ErrorCode::InvalidArgument, "the UNet runner was built without residual inputs");
  const Graph& g = residuals ? with_residuals_ : plain_;
  if (residuals) {
    if (residuals->size() != g.residuals.size())
      fail(ErrorCode::InvalidArgument, "residuals: one per input block and one for the middle block (" +
                                           std::to_string(g.residuals.size()) + ")");
    for (size_t i = 0; i < g.residuals.size(); ++i)
      if ((*residuals)[i].size() != size_t(ggml_nelements(g.residuals[i])))
        fail(ErrorCode::InvalidArgument, "residual " + std::to_string(i) + " has the wrong length");
  }
  if (allocated_ != &g) {
    runtime_.allocate(g.g->graph);
    allocated_ = &g;
  }

  const std::vector<float> t_freq = sinusoidal_embedding(timesteps, net_.model_channels());
  ggml_backend_tensor_set(g.x, x.data(), 0, x.size() * sizeof(float));
  ggml_backend_tensor_set(g.t_freq, t_freq.data(), 0, t_freq.size() * sizeof(float));
  ggml_backend_tensor_set(g.context, context.data(), 0, context.size() * sizeof(float));
  if (g.y) ggml_backend_tensor_set(g.y, y.data(), 0, y.size() * sizeof(float));
  if (residuals)
    for (size_t i = 0; i < g.residuals.size(); ++i)
      ggml_backend_tensor_set(g.residuals[i], (*residuals)[i].data(), 0, (*residuals)[i].size() * sizeof(float));
  runtime_.compute(g.g->graph, job, progress_steps);

  std::vector<float> out(out_size());
  ggml_backend_tensor_get(g.out, out.data(), 0, out.size() * sizeof(float));
  return out;
}

std::vector<float> Model::run_unet(const std::vector<float>& x, int batch, int channels, int height, int width,
                                   const std::vector<float>& timesteps, const std::vector<float>& context,
                                   int context_tokens, const std::vector<float>& y, const UnetParams& params,
                                   const JobControl& job) {
  job.throw_if_cancelled();
  UnetShape shape;
  shape.batch = batch;
  shape.channels = channels;
  shape.height = height;
  shape.width = width;
  shape.context_tokens = context_tokens;
  UnetRunner runner(weight_lookup(), runtime(), shape, params);
  return runner.run(x, timesteps, context, y, job);
}

}  // namespace sdn
