#include "pipeline/unet_runner.h"

#include <cmath>
#include <string>

#include "ggml-backend.h"

namespace sdn {

UnetRunner::UnetRunner(WeightLookup& weights, Runtime& runtime, const UnetShape& shape, const UnetParams& params)
    : runtime_(runtime), shape_(shape), net_(UnetNetwork::load(weights)) {
  net_.check_heads(params.heads, params.head_dim);
  net_.check_shape(shape_.batch, shape_.channels, shape_.height, shape_.width, shape_.context_tokens);

  // Every spatial transformer builds its attention twice when the fused op is probed.
  graph_ = std::make_unique<GraphContext>(net_.graph_nodes_estimate() * 2, runtime.is_cpu());
  ggml_context* ctx = graph_->ctx;
  x_ = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, shape_.width, shape_.height, shape_.channels, shape_.batch);
  t_freq_ = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, net_.model_channels(), shape_.batch);
  context_ = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, net_.context_dim(), shape_.context_tokens, shape_.batch);
  ggml_set_name(x_, "unet.x");
  ggml_set_name(t_freq_, "unet.t_freq");
  ggml_set_name(context_, "unet.context");
  for (ggml_tensor* t : {x_, t_freq_, context_}) ggml_set_input(t);
  if (net_.adm_channels() > 0) {
    y_ = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, net_.adm_channels(), shape_.batch);
    ggml_set_name(y_, "unet.y");
    ggml_set_input(y_);
  }

  UnetInputs in;
  in.x = x_;
  in.t_freq = t_freq_;
  in.context = context_;
  in.y = y_;
  AttentionOptions attention;
  attention.backend = runtime.backend();
  out_ = net_.build(ctx, in, params.heads, params.head_dim, attention);
  ggml_set_output(out_);
  ggml_build_forward_expand(graph_->graph, out_);
  runtime_.allocate(graph_->graph);
}

UnetRunner::~UnetRunner() { runtime_.reset(); }

size_t UnetRunner::x_size() const {
  return size_t(shape_.batch) * size_t(shape_.channels) * size_t(shape_.height) * size_t(shape_.width);
}

size_t UnetRunner::context_size() const {
  return size_t(shape_.batch) * size_t(shape_.context_tokens) * size_t(net_.context_dim());
}

size_t UnetRunner::y_size() const { return size_t(shape_.batch) * size_t(net_.adm_channels()); }

size_t UnetRunner::out_size() const { return size_t(ggml_nelements(out_)); }

std::vector<float> UnetRunner::run(const std::vector<float>& x, const std::vector<float>& timesteps,
                                   const std::vector<float>& context, const std::vector<float>& y, const JobControl& job,
                                   int progress_steps) {
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

  const std::vector<float> t_freq = sinusoidal_embedding(timesteps, net_.model_channels());
  ggml_backend_tensor_set(x_, x.data(), 0, x.size() * sizeof(float));
  ggml_backend_tensor_set(t_freq_, t_freq.data(), 0, t_freq.size() * sizeof(float));
  ggml_backend_tensor_set(context_, context.data(), 0, context.size() * sizeof(float));
  if (y_) ggml_backend_tensor_set(y_, y.data(), 0, y.size() * sizeof(float));
  runtime_.compute(graph_->graph, job, progress_steps);

  std::vector<float> out(out_size());
  ggml_backend_tensor_get(out_, out.data(), 0, out.size() * sizeof(float));
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
