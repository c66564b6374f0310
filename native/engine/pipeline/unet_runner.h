// The UNet graph built and allocated once for one input shape, then evaluated many times: what
// a sampler loop calls each step (set x, timesteps, context; compute; read the output).
#pragma once

#include <memory>
#include <vector>

#include "core/job_control.h"
#include "nn/unet.h"
#include "pipeline/graph.h"
#include "pipeline/model.h"

namespace sdn {

struct UnetShape {
  int batch = 1;
  int channels = 4;  // the model's in-channels (4, or 9 for inpainting models: UnetNetwork::input_channels)
  int height = 0;    // latent sides
  int width = 0;
  int context_tokens = 77;
  // A second graph that adds ControlNet residuals (UnetInputs) is built beside the plain one;
  // run() takes whichever a step needs, allocating it when the other one was last.
  bool residuals = false;
};

class UnetRunner {
 public:
  // Reads the UNet from `weights`, checks `shape` and `params`, builds the graph and allocates
  // its compute buffers on `runtime`. Throws InvalidArgument (shape, heads), ModelCompatibility
  // (the weights), Resource.
  //
  // The runner holds the runtime's compute buffers until it is destroyed: while it lives, the
  // runtime computes nothing else (callers hold Model::compute_mutex()), and neither the
  // weights nor the runtime may go first.
  UnetRunner(WeightLookup& weights, Runtime& runtime, const UnetShape& shape, const UnetParams& params);
  ~UnetRunner();
  UnetRunner(const UnetRunner&) = delete;
  UnetRunner& operator=(const UnetRunner&) = delete;

  const UnetShape& shape() const { return shape_; }
  int out_channels() const { return static_cast<int>(net_.out_channels()); }
  int context_dim() const { return static_cast<int>(net_.context_dim()); }
  int adm_channels() const { return static_cast<int>(net_.adm_channels()); }
  const UnetNetwork& network() const { return net_; }
  size_t x_size() const;        // batch × channels × height × width
  size_t context_size() const;  // batch × tokens × context width
  size_t y_size() const;        // batch × adm channels (0 for UNets without label_emb)
  size_t out_size() const;      // batch × out channels × height × width

  // One evaluation. x [batch][channels][H][W], timesteps [batch], context
  // [batch][tokens][width], y [batch][adm channels] (empty for UNets without label_emb) ->
  // [batch][out channels][H][W]. `residuals` (with shape().residuals): ControlNet residuals to
  // add, one per input block [batch][C][h][w] then the middle block's; null: none. Throws
  // InvalidArgument for wrong lengths or non-finite timesteps, Aborted, Backend.
  std::vector<float> run(const std::vector<float>& x, const std::vector<float>& timesteps,
                         const std::vector<float>& context, const std::vector<float>& y, const JobControl& job,
                         int progress_steps = 16, const std::vector<std::vector<float>>* residuals = nullptr);

 private:
  struct Graph {
    std::unique_ptr<GraphContext> g;
    ggml_tensor* x = nullptr;        // [W, H, C, B]
    ggml_tensor* t_freq = nullptr;   // [model channels, B]
    ggml_tensor* context = nullptr;  // [width, tokens, B]
    ggml_tensor* y = nullptr;        // [adm channels, B], or null
    std::vector<ggml_tensor*> residuals;  // input blocks', then the middle block's; empty: none
    ggml_tensor* out = nullptr;      // [W, H, out C, B]
  };
  Graph build_graph(const UnetParams& params, bool residuals) const;

  Runtime& runtime_;
  UnetShape shape_;
  UnetNetwork net_;
  Graph plain_, with_residuals_;
  const Graph* allocated_ = nullptr;
};

}  // namespace sdn
