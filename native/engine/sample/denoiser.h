// The denoiser D(x, sigma) a sampler integrates, built from a model that predicts eps or v
// (k-diffusion's CompVisDenoiser / CompVisVDenoiser) with classifier-free guidance on top.
//
// The samplers work in the "variance exploding" form x = x0 + sigma·n; a discrete DDPM model
// was trained on the "variance preserving" x_vp = x / sqrt(sigma² + 1) at timestep t(sigma):
//   D(x, sigma) = c_skip · x + c_out · model(c_in · x, t(sigma))
//   eps:  c_skip = 1,                c_out = -sigma,                 c_in = 1 / sqrt(sigma² + 1)
//   v:    c_skip = 1 / (sigma² + 1), c_out = -sigma / sqrt(sigma² + 1), c_in = 1 / sqrt(sigma² + 1)
// Guidance over a batch of conditionings [uncond, cond]: D = D_u + cfg · (D_c − D_u).
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "sample/samplers.h"
#include "sample/schedule.h"

namespace sdn {

enum class Prediction { Epsilon, V };

struct DenoiserScalings {
  float c_skip = 1, c_out = 0, c_in = 1;
};
DenoiserScalings denoiser_scalings(Prediction prediction, float sigma);

// One model evaluation: `x_in` (one latent, already × c_in) at fractional timestep `t`, for
// every conditioning of the batch -> `pred` [batch][latent size]. How the latent becomes the
// model's input (extra channels, contexts, the vector y) is the caller's business.
using ModelCall = std::function<void(const float* x_in, float t, std::vector<float>& pred)>;

struct GuidanceParams {
  int batch = 1;            // 1: no guidance; 2: [uncond, cond]
  float cfg_scale = 1.0f;   // used when batch is 2
};

// D(x, sigma) for a sampler: `latent_size` floats in and out. InvalidArgument for a batch other
// than 1 or 2, or when the model call returns the wrong length.
Denoiser make_denoiser(Prediction prediction, const DiscreteSchedule& schedule, size_t latent_size,
                       const GuidanceParams& guidance, ModelCall model);

}  // namespace sdn
