// Noise schedules: the discrete DDPM schedule a model was trained on (betas -> alphas_cumprod
// -> sigmas, with sigma <-> timestep conversion), and the schedulers that pick the sigmas a
// sampler walks through.
//
// Conventions are k-diffusion's (DiscreteSchedule / CompVisDenoiser): sigma = sqrt((1 - ab)/ab)
// for alphas_cumprod ab, the latent x = x0 + sigma * noise ("variance exploding" form), and a
// fractional timestep t in [0, timesteps-1] maps to a sigma by linear interpolation of
// log(sigma) between the two neighbouring training timesteps.
#pragma once

#include <vector>

#include "sample/catalog.h"

namespace sdn {

// The "scaled linear" betas of the training schedule, betas = linspace(sqrt(start), sqrt(end),
// timesteps)^2. SD1.x / SD2.x / SDXL: 0.00085 to 0.012 over 1000 steps.
struct BetaSchedule {
  double beta_start = 0.00085;
  double beta_end = 0.012;
  int timesteps = 1000;
};

class DiscreteSchedule {
 public:
  // InvalidArgument for timesteps < 2 or > 100000, or betas outside (0, 1) / not increasing.
  explicit DiscreteSchedule(const BetaSchedule& betas = {});

  int timesteps() const { return static_cast<int>(sigmas_.size()); }
  // Per training timestep 0..timesteps-1 (ascending noise).
  const std::vector<double>& alphas_cumprod() const { return alphas_cumprod_; }
  const std::vector<float>& sigmas() const { return sigmas_; }
  float sigma_min() const { return sigmas_.front(); }
  float sigma_max() const { return sigmas_.back(); }

  // log-sigma interpolation; t is clamped to [0, timesteps-1], sigma to [sigma_min, sigma_max].
  float t_to_sigma(float t) const;
  float sigma_to_t(float sigma) const;

 private:
  std::vector<double> alphas_cumprod_;
  std::vector<float> sigmas_;
  std::vector<float> log_sigmas_;
};

// steps + 1 sigmas, strictly decreasing, the last one 0 (InvalidArgument unless
// 1 <= steps <= 10000, and for simple and lcm unless steps <= the timesteps they pick from).
// For i = 0 .. steps-1, with T the schedule's timesteps (1000):
//   discrete     t = linspace(T-1, 0, steps), sigma(t)            (k-diffusion get_sigmas(n))
//   karras       (smax^(1/7) + i/(steps-1) (smin^(1/7) - smax^(1/7)))^7   (Karras et al. eq. 5)
//   exponential  exp(linspace(log smax, log smin, steps))
//   sgm_uniform  t = linspace(T-1, 0, steps + 1) without its last point, sigma(t)
//   simple       t = T-1 - floor(i * f), f = T/steps rounded to float32 and the product taken
//                in float32, as stable-diffusion.cpp does (ComfyUI's "simple"; the float32
//                step moves some t by one, e.g. steps 30, i 15: 500, not 499); steps <= T
//   lcm          t = (K - floor(i K / steps)) (T/K) - 1 with K = 50 original steps (the LCM
//                training schedule, diffusers' LCMScheduler); steps <= K
// smin, smax: the model's sigma_min() / sigma_max(). With steps == 1 each gives {smax, 0}.
std::vector<float> make_sigmas(SchedulerKind kind, int steps, const DiscreteSchedule& schedule);

}  // namespace sdn
