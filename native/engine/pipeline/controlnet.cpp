#include "pipeline/controlnet.h"

#include <cmath>

#include "ggml-backend.h"
#include "io/model_file.h"
#include "io/name_map_controlnet.h"
#include "nn/weights.h"

namespace sdn {

struct ControlNet::Loaded {
  TensorStore store;
  std::unique_ptr<Weights> weights;
  ControlNetwork net;
};

ControlNet::ControlNet(const std::string& path, Model& model, const std::string& device, const JobControl* job) {
  ModelFile file = open_model_file(path);
  info_.format = file_format_name(file.format);
  ControlNetNames names;
  try {
    names = map_controlnet_names(std::move(file.store));
  } catch (const Error& e) {
    fail(e.code(), path + ": " + e.what());
  }
  info_.convention = names.convention;
  info_.dropped = names.dropped.size();
  loaded_ = std::make_unique<Loaded>();
  loaded_->store = std::move(names.store);
  // Half-precision files stay half precision on the device (as the UNet's weights do), others f32.
  const TensorInfo* stem = loaded_->store.find(kInternalControlNet + "input_blocks.0.0.weight");
  const bool half = stem && (stem->dtype == DType::F16 || stem->dtype == DType::BF16);
  loaded_->weights = std::make_unique<Weights>(loaded_->store, half ? GGML_TYPE_F16 : GGML_TYPE_F32, loaded_->store.size());
  try {
    loaded_->net = ControlNetwork::load(*loaded_->weights);
    loaded_->net.check_fits(UnetNetwork::load(model.weight_lookup()));
  } catch (const Error& e) {
    fail(e.code(), path + ": " + e.what());
  }
  const ControlNetwork& net = loaded_->net;
  info_.blocks = static_cast<int>(net.blocks());
  info_.model_channels = net.encoder().model_channels();
  info_.context_dim = net.context_dim();
  info_.adm_channels = net.encoder().adm_channels();
  if (job) {
    job->throw_if_cancelled();
    job->report(1, 2);
  }
  runtime_ = std::make_unique<Runtime>(device, model.runtime().threads());
  info_.device = device;
  loaded_->weights->upload(runtime_->weight_buffer_type());
  info_.weight_bytes = loaded_->weights->bytes();
  if (job) job->report(2, 2);
}

ControlNet::~ControlNet() {
  // Weights live in buffers of the runtime's backend: free them first.
  loaded_.reset();
  runtime_.reset();
}

const ControlNetwork& ControlNet::network() const { return loaded_->net; }

ControlNetRunner::ControlNetRunner(ControlNet& net, const UnetNetwork* unet, const Image& hint, const ControlNetShape& shape,
                                   const UnetParams& params, const JobControl& job)
    : net_(net), lock_(net.mutex()), shape_(shape) {
  const ControlNetwork& cn = net.network();
  if (unet) cn.check_fits(*unet);
  cn.check_heads(params.heads, params.head_dim);
  const int d = cn.hint().downscale();
  if (hint.width != shape.width * d || hint.height != shape.height * d)
    fail(ErrorCode::InvalidArgument, "the control image is " + std::to_string(hint.width) + "x" + std::to_string(hint.height) +
                                         ", the job " + std::to_string(shape.width * d) + "x" + std::to_string(shape.height * d));
  if (shape.batch < 1 || shape.batch > 64 || shape.context_tokens < 1 || shape.context_tokens > 65536 || shape.height <= 0 ||
      shape.width <= 0)
    fail(ErrorCode::InvalidArgument, "the ControlNet's batch, tokens and sides must be positive (batch at most 64)");
  if (shape.channels != cn.encoder().in_channels())
    fail(ErrorCode::InvalidArgument, "the ControlNet takes " + std::to_string(cn.encoder().in_channels()) + " latent channels");
  Runtime& runtime = net.runtime();

  // The hint's encoding does not change over the steps: computed once (as stable-diffusion.cpp caches it).
  const GraphBuild build_hint = [&cn](ggml_context* ctx, ggml_tensor* in) { return cn.build_hint(ctx, in); };
  check_intermediate_size(double(hint.width) * hint.height * cn.hint().convs.front().out_channels() * 9,
                          "the control image is too large to encode");
  guided_hint_ = run_planar(runtime, pixels_to_planar(hint, 0.0f, 1.0f), "controlnet.hint", build_hint,
                            16 + 4 * cn.hint().convs.size(), 0, job);

  graph_ = std::make_unique<GraphContext>(cn.graph_nodes_estimate() * 2, runtime.is_cpu());
  ggml_context* ctx = graph_->ctx;
  x_ = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, shape.width, shape.height, shape.channels, shape.batch);
  t_freq_ = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cn.encoder().model_channels(), shape.batch);
  context_ = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, cn.context_dim(), shape.context_tokens, shape.batch);
  hint_ = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, guided_hint_.width, guided_hint_.height, guided_hint_.channels, 1);
  ggml_set_name(x_, "controlnet.x");
  ggml_set_name(t_freq_, "controlnet.t_freq");
  ggml_set_name(context_, "controlnet.context");
  ggml_set_name(hint_, "controlnet.guided_hint_in");
  for (ggml_tensor* t : {x_, t_freq_, context_, hint_}) ggml_set_input(t);
  if (cn.encoder().adm_channels() > 0) {
    y_ = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cn.encoder().adm_channels(), shape.batch);
    ggml_set_name(y_, "controlnet.y");
    ggml_set_input(y_);
  }
  ControlNetInputs in;
  in.x = x_;
  in.t_freq = t_freq_;
  in.context = context_;
  in.y = y_;
  in.guided_hint = hint_;
  AttentionOptions attention;
  attention.backend = runtime.backend();
  outs_ = cn.build(ctx, in, params.heads, params.head_dim, attention);
  for (ggml_tensor* o : outs_) {
    ggml_set_output(o);
    ggml_build_forward_expand(graph_->graph, o);
  }
  runtime.allocate(graph_->graph);
  residuals_.resize(outs_.size());
  for (size_t i = 0; i < outs_.size(); ++i) residuals_[i].resize(size_t(ggml_nelements(outs_[i])));
}

ControlNetRunner::~ControlNetRunner() { net_.runtime().reset(); }

const std::vector<std::vector<float>>& ControlNetRunner::run(const std::vector<float>& x, const std::vector<float>& timesteps,
                                                             const std::vector<float>& context, const std::vector<float>& y,
                                                             const JobControl& job) {
  const ControlNetwork& cn = net_.network();
  if (x.size() != size_t(ggml_nelements(x_)) || timesteps.size() != size_t(shape_.batch) ||
      context.size() != size_t(ggml_nelements(context_)) || y.size() != (y_ ? size_t(ggml_nelements(y_)) : 0))
    fail(ErrorCode::InvalidArgument, "the ControlNet's inputs have the wrong lengths");
  for (float t : timesteps)
    if (!std::isfinite(t)) fail(ErrorCode::InvalidArgument, "timesteps must be finite");
  const std::vector<float> t_freq = sinusoidal_embedding(timesteps, cn.encoder().model_channels());
  ggml_backend_tensor_set(x_, x.data(), 0, x.size() * sizeof(float));
  ggml_backend_tensor_set(t_freq_, t_freq.data(), 0, t_freq.size() * sizeof(float));
  ggml_backend_tensor_set(context_, context.data(), 0, context.size() * sizeof(float));
  ggml_backend_tensor_set(hint_, guided_hint_.data.data(), 0, guided_hint_.data.size() * sizeof(float));
  if (y_) ggml_backend_tensor_set(y_, y.data(), 0, y.size() * sizeof(float));
  net_.runtime().compute(graph_->graph, job, 0);
  for (size_t i = 0; i < outs_.size(); ++i)
    ggml_backend_tensor_get(outs_[i], residuals_[i].data(), 0, residuals_[i].size() * sizeof(float));
  return residuals_;
}

}  // namespace sdn
