#include "sample/denoiser.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "core/error.h"

namespace sdn {

DenoiserScalings denoiser_scalings(Prediction prediction, float sigma) {
  const float s2 = sigma * sigma + 1.0f;
  DenoiserScalings s;
  s.c_in = 1.0f / std::sqrt(s2);
  if (prediction == Prediction::Epsilon) {
    s.c_skip = 1.0f;
    s.c_out = -sigma;
  } else {
    s.c_skip = 1.0f / s2;
    s.c_out = -sigma / std::sqrt(s2);
  }
  return s;
}

Denoiser make_denoiser(Prediction prediction, const DiscreteSchedule& schedule, size_t latent_size,
                       const GuidanceParams& guidance, ModelCall model) {
  if (guidance.batch != 1 && guidance.batch != 2)
    fail(ErrorCode::InvalidArgument, "guidance takes one conditioning or two (uncond, cond), not " + std::to_string(guidance.batch));
  // Buffers shared by the calls of one sampler run (the sampler calls the denoiser serially).
  auto x_in = std::make_shared<std::vector<float>>(latent_size);
  auto pred = std::make_shared<std::vector<float>>();
  return [=, &schedule](const float* x, float sigma, float* out) {
    const DenoiserScalings s = denoiser_scalings(prediction, sigma);
    for (size_t i = 0; i < latent_size; ++i) (*x_in)[i] = x[i] * s.c_in;
    model(x_in->data(), schedule.sigma_to_t(sigma), *pred);
    if (pred->size() != latent_size * guidance.batch)
      fail(ErrorCode::InvalidArgument, "the model returned " + std::to_string(pred->size()) + " values for a batch of " +
                                           std::to_string(guidance.batch) + " latents of " + std::to_string(latent_size));
    float* p = pred->data();
    for (int b = 0; b < guidance.batch; ++b) {
      float* pb = p + b * latent_size;
      for (size_t i = 0; i < latent_size; ++i) pb[i] = s.c_skip * x[i] + s.c_out * pb[i];
    }
    if (guidance.batch == 1) {
      std::copy(p, p + latent_size, out);
      return;
    }
    const float* uncond = p;
    const float* cond = p + latent_size;
    for (size_t i = 0; i < latent_size; ++i) out[i] = uncond[i] + guidance.cfg_scale * (cond[i] - uncond[i]);
  };
}

}  // namespace sdn
