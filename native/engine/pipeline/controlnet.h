// ControlNet as the generate job uses it: a file loaded for one model (checked against its
// UNet, weights on the model's device in a runtime of its own, so that its graph and the
// UNet's are allocated side by side), and per job a runner that encodes the hint image once
// and evaluates the network once per sampler step before the UNet.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/job_control.h"
#include "nn/controlnet.h"
#include "pipeline/backend.h"
#include "pipeline/graph.h"
#include "pipeline/image.h"
#include "pipeline/model.h"

namespace sdn {

struct ControlNetInfo {
  std::string convention;  // "ldm" or "diffusers" (io/name_map_controlnet.h)
  std::string format;      // "safetensors", "gguf", "torch"
  std::string device;
  int blocks = 0;          // input blocks (residuals: one more, the middle block's)
  int64_t model_channels = 0, context_dim = 0, adm_channels = 0;
  size_t weight_bytes = 0;
  size_t dropped = 0;      // file tensors that are not the ControlNet's (e.g. a whole SD model beside it)
};

class ControlNet {
 public:
  // Reads `path`, checks the network against `model`'s UNet (ModelCompatibility naming what
  // does not fit) and puts the weights on `device` (the model's). The caller holds
  // model.compute_mutex(). Its computes take at most the model's threads. Throws FileAccess,
  // ModelFormat (not a ControlNet file), ModelCompatibility, Backend, Resource. Progress, with
  // a job: 1 of 2 once the network is known, 2 once the weights are on the device.
  ControlNet(const std::string& path, Model& model, const std::string& device, const JobControl* job);
  ~ControlNet();
  ControlNet(const ControlNet&) = delete;
  ControlNet& operator=(const ControlNet&) = delete;

  const ControlNetInfo& info() const { return info_; }
  const ControlNetwork& network() const;
  Runtime& runtime() { return *runtime_; }
  // One job at a time: the runtime's compute buffers are the job's.
  std::mutex& mutex() { return mutex_; }

 private:
  struct Loaded;
  std::unique_ptr<Loaded> loaded_;
  std::unique_ptr<Runtime> runtime_;
  ControlNetInfo info_;
  std::mutex mutex_;
};

// One ControlNet in a generate job.
struct ControlNetUse {
  std::shared_ptr<ControlNet> net;
  Image image;            // the hint, the job's width × height, RGB(A) (alpha ignored), 0 … 255 -> 0 … 1
  Image hires_image;      // with a hires fix: the hint at its pass's size (empty: none given)
  float strength = 1.0f;  // its residuals' factor
  float start = 0.0f;     // active in steps i with start <= i / steps <= end (i from 0, the steps run)
  float end = 1.0f;
};

struct ControlNetShape {
  int batch = 1;
  int channels = 4;  // latent channels
  int height = 0;    // latent sides
  int width = 0;
  int context_tokens = 77;
};

// A ControlNet's graph for one job: the hint encoded at construction, then run() per step.
// Holds the ControlNet's mutex and compute buffers while it lives.
class ControlNetRunner {
 public:
  // Throws ModelCompatibility (does not fit `unet`; null: not checked, for tests of the network
  // alone), InvalidArgument (hint size, heads), Resource, Aborted.
  ControlNetRunner(ControlNet& net, const UnetNetwork* unet, const Image& hint, const ControlNetShape& shape,
                   const UnetParams& params, const JobControl& job);
  ~ControlNetRunner();
  ControlNetRunner(const ControlNetRunner&) = delete;
  ControlNetRunner& operator=(const ControlNetRunner&) = delete;

  // x [batch][channels][H][W] (the UNet's latent input, × c_in), timesteps [batch], context
  // [batch][tokens][width], y [batch][adm] or empty -> the residuals, unscaled: one per input
  // block [batch][C][h][w], then the middle block's.
  const std::vector<std::vector<float>>& run(const std::vector<float>& x, const std::vector<float>& timesteps,
                                             const std::vector<float>& context, const std::vector<float>& y,
                                             const JobControl& job);

 private:
  ControlNet& net_;
  std::unique_lock<std::mutex> lock_;
  ControlNetShape shape_;
  std::unique_ptr<GraphContext> graph_;
  ggml_tensor *x_ = nullptr, *t_freq_ = nullptr, *context_ = nullptr, *y_ = nullptr, *hint_ = nullptr;
  std::vector<ggml_tensor*> outs_;
  Latent guided_hint_;  // [model channels][H][W]
  std::vector<std::vector<float>> residuals_;
};

}  // namespace sdn
