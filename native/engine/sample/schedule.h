// Noise schedules: the discrete DDPM schedule a model was trained on (betas -> alphas_cumprod
// -> sigmas, with sigma <-> timestep conversion), and the schedulers that pick the sigmas a
// sampler walks through.
//
// Conventions are k-diffusion's (DiscreteSchedule / CompVisDenoiser): sigma = sqrt((1 - ab)/ab)
// for alphas_cumprod ab, the latent x = x0 + sigma * noise ("variance exploding" form), and a
// fractional timestep t in [0, timesteps-1] maps to a sigma by linear interpolation of
// log(sigma) between the two neighbouring training timesteps.
#pragma once

#include <string>
#include <vector>

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

enum class SchedulerKind { Discrete, Karras, Exponential, SgmUniform };

// "discrete", "karras", "exponential", "sgm_uniform"; anything else is InvalidArgument.
SchedulerKind parse_scheduler(const std::string& name);
const char* scheduler_name(SchedulerKind kind);

// steps + 1 sigmas, decreasing, the last one 0 (InvalidArgument unless 1 <= steps <= 10000).
//   discrete     t = linspace(T-1, 0, steps), sigma(t)            (k-diffusion get_sigmas(n))
//   karras       (smax^(1/7) + i/(steps-1) (smin^(1/7) - smax^(1/7)))^7   (Karras et al. eq. 5)
//   exponential  exp(linspace(log smax, log smin, steps))
//   sgm_uniform  t = linspace(T-1, 0, steps + 1) without its last point, sigma(t)
// smin, smax: the model's sigma_min() / sigma_max(). With steps == 1 each gives {smax, 0}.
std::vector<float> make_sigmas(SchedulerKind kind, int steps, const DiscreteSchedule& schedule);

}  // namespace sdn
