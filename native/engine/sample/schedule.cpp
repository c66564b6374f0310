#include "sample/schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace sdn {

DiscreteSchedule::DiscreteSchedule(const BetaSchedule& b) {
  if (b.timesteps < 2 || b.timesteps > 100000) {
    fail(ErrorCode::InvalidArgument, "schedule: timesteps must be between 2 and 100000");
  }
  if (!(b.beta_start > 0 && b.beta_end < 1 && b.beta_start <= b.beta_end)) {
    fail(ErrorCode::InvalidArgument, "schedule: betas must satisfy 0 < beta_start <= beta_end < 1");
  }
  const int n = b.timesteps;
  alphas_cumprod_.resize(n);
  sigmas_.resize(n);
  log_sigmas_.resize(n);
  // In double, as the LDM / diffusers code does before it stores float32 buffers
  // (stable-diffusion.cpp accumulates in float; the sigmas differ by ~1e-6 relative).
  const double s0 = std::sqrt(b.beta_start), s1 = std::sqrt(b.beta_end);
  double product = 1.0;
  for (int i = 0; i < n; ++i) {
    const double root = s0 + (s1 - s0) * (static_cast<double>(i) / (n - 1));
    product *= 1.0 - root * root;
    alphas_cumprod_[i] = product;
    // k-diffusion takes the float32 alphas_cumprod buffer; the sigma itself is exact enough
    // in double and rounded once.
    sigmas_[i] = static_cast<float>(std::sqrt((1.0 - product) / product));
    log_sigmas_[i] = std::log(sigmas_[i]);
  }
}

float DiscreteSchedule::t_to_sigma(float t) const {
  const float t_max = static_cast<float>(timesteps() - 1);
  if (!(t > 0)) t = 0;  // also NaN
  if (t > t_max) t = t_max;
  const int low = static_cast<int>(std::floor(t));
  const int high = static_cast<int>(std::ceil(t));
  const float w = t - static_cast<float>(low);
  const float log_sigma = (1.0f - w) * log_sigmas_[low] + w * log_sigmas_[high];
  return std::exp(log_sigma);
}

float DiscreteSchedule::sigma_to_t(float sigma) const {
  // k-diffusion DiscreteSchedule.sigma_to_t: the last training timestep whose log sigma is
  // <= log(sigma) (clamped so that it has an upper neighbour), then a linear weight in log
  // space between it and the next one, clamped to [0, 1].
  const int n = timesteps();
  const float log_sigma = std::log(std::max(sigma, 1e-30f));
  const int count_le = static_cast<int>(std::upper_bound(log_sigmas_.begin(), log_sigmas_.end(), log_sigma) -
                                        log_sigmas_.begin());
  const int low = std::clamp(count_le - 1, 0, n - 2);
  const int high = low + 1;
  const float lo = log_sigmas_[low], hi = log_sigmas_[high];
  float w = (lo - log_sigma) / (lo - hi);
  w = std::clamp(w, 0.0f, 1.0f);
  return (1.0f - w) * static_cast<float>(low) + w * static_cast<float>(high);
}

namespace {

// The LCM training schedule: the distilled model saw only this many evenly spaced timesteps.
constexpr int kLcmOriginalSteps = 50;

// The training timestep of step i of `steps` under the schedulers that pick whole timesteps
// (see make_sigmas in the header); integers, so that sigma(t) is the model's own sigma.
int simple_timestep(int i, int steps, int timesteps) {
  // float32 on purpose: stable-diffusion.cpp's step factor and product, bit for bit.
  const float factor = static_cast<float>(timesteps) / static_cast<float>(steps);
  const int offset = static_cast<int>(static_cast<float>(i) * factor);
  return std::max(timesteps - 1 - offset, 0);
}

int lcm_timestep(int i, int steps, int timesteps) {
  const int stride = timesteps / kLcmOriginalSteps;
  const int index = i * kLcmOriginalSteps / steps;
  return (kLcmOriginalSteps - index) * stride - 1;
}

}  // namespace

std::vector<float> make_sigmas(SchedulerKind kind, int steps, const DiscreteSchedule& schedule) {
  if (steps < 1 || steps > 10000) fail(ErrorCode::InvalidArgument, "steps must be between 1 and 10000");
  // Beyond these counts the picked timesteps repeat, and a sampler needs decreasing sigmas.
  if (kind == SchedulerKind::Simple && steps > schedule.timesteps()) {
    fail(ErrorCode::InvalidArgument, "the simple scheduler takes at most " + std::to_string(schedule.timesteps()) +
                                         " steps (one per training timestep)");
  }
  if (kind == SchedulerKind::Lcm && (steps > kLcmOriginalSteps || schedule.timesteps() < kLcmOriginalSteps)) {
    fail(ErrorCode::InvalidArgument,
         "the lcm scheduler takes at most " + std::to_string(kLcmOriginalSteps) + " steps (its original steps)");
  }
  const double t_max = schedule.timesteps() - 1;
  const double smin = schedule.sigma_min(), smax = schedule.sigma_max();
  std::vector<float> sigmas(steps + 1);
  // Position i of n points from 0 to 1 (torch.linspace(0, 1, n); a single point is 0).
  auto ramp = [](int i, int n) { return n > 1 ? static_cast<double>(i) / (n - 1) : 0.0; };
  for (int i = 0; i < steps; ++i) {
    switch (kind) {
      case SchedulerKind::Discrete:
        sigmas[i] = schedule.t_to_sigma(static_cast<float>(t_max * (1.0 - ramp(i, steps))));
        break;
      case SchedulerKind::Karras: {
        const double rho = 7.0;
        const double max_inv_rho = std::pow(smax, 1.0 / rho);
        const double min_inv_rho = std::pow(smin, 1.0 / rho);
        sigmas[i] = static_cast<float>(std::pow(max_inv_rho + ramp(i, steps) * (min_inv_rho - max_inv_rho), rho));
        break;
      }
      case SchedulerKind::Exponential: {
        const double log_max = std::log(smax), log_min = std::log(smin);
        sigmas[i] = static_cast<float>(std::exp(log_max + ramp(i, steps) * (log_min - log_max)));
        break;
      }
      case SchedulerKind::SgmUniform:
        sigmas[i] = schedule.t_to_sigma(static_cast<float>(t_max * (1.0 - ramp(i, steps + 1))));
        break;
      case SchedulerKind::Simple:
        sigmas[i] = schedule.t_to_sigma(static_cast<float>(simple_timestep(i, steps, schedule.timesteps())));
        break;
      case SchedulerKind::Lcm:
        sigmas[i] = schedule.t_to_sigma(static_cast<float>(lcm_timestep(i, steps, schedule.timesteps())));
        break;
    }
  }
  sigmas[steps] = 0.0f;
  return sigmas;
}

}  // namespace sdn
