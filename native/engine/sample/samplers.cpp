#include "sample/samplers.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "core/error.h"

namespace sdn {

namespace {

void check_inputs(const std::vector<float>& x, const std::vector<float>& sigmas) {
  if (x.empty()) fail(ErrorCode::InvalidArgument, "sample: the latent is empty");
  if (sigmas.size() < 2) fail(ErrorCode::InvalidArgument, "sample: at least two sigmas are needed (one step)");
  for (size_t i = 0; i < sigmas.size(); ++i) {
    if (!std::isfinite(sigmas[i]) || sigmas[i] < 0) {
      fail(ErrorCode::InvalidArgument, "sample: sigmas must be finite and >= 0");
    }
    if (i + 1 < sigmas.size() && !(sigmas[i] > sigmas[i + 1])) {
      fail(ErrorCode::InvalidArgument, "sample: sigmas must be strictly decreasing");
    }
  }
}

// k-diffusion get_ancestral_step with eta = 1: the step from sigma to sigma_next splits into a
// deterministic part down to sigma_down and fresh noise of std sigma_up, with
// sigma_down^2 + sigma_up^2 = sigma_next^2.
struct AncestralStep {
  double down, up;
};
AncestralStep ancestral_step(double sigma, double sigma_next) {
  const double up = std::min(sigma_next, std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                                                   (sigma * sigma)));
  return {std::sqrt(std::max(0.0, sigma_next * sigma_next - up * up)), up};
}

// Shared buffers and helpers of one sampling run.
class Run {
 public:
  Run(std::vector<float>& x, const Denoiser& denoiser, Rng& rng)
      : x_(x), n_(x.size()), denoiser_(denoiser), rng_(rng), denoised_(n_), noise_(n_) {}

  size_t size() const { return n_; }
  float* x() { return x_.data(); }

  // D(from, sigma) into out (default: the run's denoised buffer).
  const float* denoise(const float* from, double sigma, float* out = nullptr) {
    if (!out) out = denoised_.data();
    denoiser_(from, static_cast<float>(sigma), out);
    return out;
  }

  // x += scale * noise, with fresh noise from one rng call.
  void add_noise(double scale) {
    rng_.randn(noise_.data(), n_);
    const float s = static_cast<float>(scale);
    for (size_t j = 0; j < n_; ++j) x_[j] += s * noise_[j];
  }

 private:
  std::vector<float>& x_;
  size_t n_;
  const Denoiser& denoiser_;
  Rng& rng_;
  std::vector<float> denoised_;
  std::vector<float> noise_;
};

// x += (x - D) / sigma * (sigma_to - sigma): one Euler step of the probability-flow ODE
// dx/dsigma = (x - D(x, sigma)) / sigma.
void euler_step(float* x, const float* denoised, size_t n, double sigma, double sigma_to) {
  const float ratio = static_cast<float>((sigma_to - sigma) / sigma);
  for (size_t j = 0; j < n; ++j) x[j] += (x[j] - denoised[j]) * ratio;
}

}  // namespace

void sample(SamplerKind kind, std::vector<float>& xs, const std::vector<float>& sigmas, const Denoiser& denoiser,
            Rng& rng, JobControl& job, const StepHook& after_step) {
  check_inputs(xs, sigmas);
  const int steps = static_cast<int>(sigmas.size() - 1);
  Run run(xs, denoiser, rng);
  const size_t n = run.size();
  float* x = run.x();
  std::vector<float> x2;        // heun, dpm2, dpm++2s_a: the intermediate point
  std::vector<float> denoised2; // their second model output
  std::vector<float> old_denoised;  // dpm++2m: the previous step's D
  if (kind == SamplerKind::Heun || kind == SamplerKind::Dpm2 || kind == SamplerKind::DpmPP2SA) {
    x2.resize(n);
    denoised2.resize(n);
  }
  if (kind == SamplerKind::DpmPP2M) old_denoised.resize(n);

  for (int i = 0; i < steps; ++i) {
    job.throw_if_cancelled();
    const double sigma = sigmas[i];
    const double sigma_next = sigmas[i + 1];

    switch (kind) {
      case SamplerKind::Euler: {
        // 1. D = D(x, sigma)
        const float* d = run.denoise(x, sigma);
        // 2. x <- x + (x - D) / sigma * (sigma_next - sigma)
        euler_step(x, d, n, sigma, sigma_next);
        break;
      }

      case SamplerKind::EulerA: {
        // 1. D = D(x, sigma)
        const float* d = run.denoise(x, sigma);
        // 2. split the step: sigma_down (deterministic) and sigma_up (fresh noise)
        const AncestralStep a = ancestral_step(sigma, sigma_next);
        // 3. Euler step from sigma to sigma_down
        euler_step(x, d, n, sigma, a.down);
        // 4. x <- x + sigma_up * noise (no noise on a last step to 0)
        if (sigma_next > 0) run.add_noise(a.up);
        break;
      }

      case SamplerKind::Heun: {
        // 1. D = D(x, sigma); slope d = (x - D) / sigma
        const float* d = run.denoise(x, sigma);
        if (sigma_next == 0) {
          // 2a. the last step to 0 is an Euler step (the slope at sigma = 0 is undefined)
          euler_step(x, d, n, sigma, sigma_next);
          break;
        }
        // 2. predictor: x2 = x + d * (sigma_next - sigma)
        const double dt = sigma_next - sigma;
        const float fdt = static_cast<float>(dt);
        const float inv_sigma = static_cast<float>(1.0 / sigma);
        for (size_t j = 0; j < n; ++j) x2[j] = x[j] + (x[j] - d[j]) * inv_sigma * fdt;
        // 3. D2 = D(x2, sigma_next); slope d2 = (x2 - D2) / sigma_next
        const float* d2 = run.denoise(x2.data(), sigma_next, denoised2.data());
        // 4. corrector: x <- x + (d + d2) / 2 * (sigma_next - sigma)
        const float inv_next = static_cast<float>(1.0 / sigma_next);
        for (size_t j = 0; j < n; ++j) {
          const float slope = (x[j] - d[j]) * inv_sigma;
          const float slope2 = (x2[j] - d2[j]) * inv_next;
          x[j] += 0.5f * (slope + slope2) * fdt;
        }
        break;
      }

      case SamplerKind::Dpm2: {
        // 1. D = D(x, sigma); slope d = (x - D) / sigma
        const float* d = run.denoise(x, sigma);
        if (sigma_next == 0) {
          // 2a. the last step to 0 is an Euler step
          euler_step(x, d, n, sigma, sigma_next);
          break;
        }
        // 2. the midpoint in log sigma: sigma_mid = sqrt(sigma * sigma_next)
        const double sigma_mid = std::exp(0.5 * (std::log(sigma) + std::log(sigma_next)));
        // 3. x2 = x + d * (sigma_mid - sigma)
        const float inv_sigma = static_cast<float>(1.0 / sigma);
        const float dt1 = static_cast<float>(sigma_mid - sigma);
        for (size_t j = 0; j < n; ++j) x2[j] = x[j] + (x[j] - d[j]) * inv_sigma * dt1;
        // 4. D2 = D(x2, sigma_mid); x <- x + (x2 - D2) / sigma_mid * (sigma_next - sigma)
        const float* d2 = run.denoise(x2.data(), sigma_mid, denoised2.data());
        const float ratio = static_cast<float>((sigma_next - sigma) / sigma_mid);
        for (size_t j = 0; j < n; ++j) x[j] += (x2[j] - d2[j]) * ratio;
        break;
      }

      case SamplerKind::DpmPP2M: {
        // In t = -log(sigma): h = t_next - t, and the exact update of the data-prediction ODE
        // for a D held constant over the step is x <- (sigma_next / sigma) x - expm1(-h) D.
        // 1. D = D(x, sigma)
        const float* d = run.denoise(x, sigma);
        if (i == 0 || sigma_next == 0) {
          // 2a. first step (no history) and last step to 0 (x <- D): first order
          const float a = static_cast<float>(sigma_next / sigma);
          const float b = static_cast<float>(-std::expm1(sigma_next > 0 ? std::log(sigma_next / sigma) : -INFINITY));
          for (size_t j = 0; j < n; ++j) x[j] = a * x[j] + b * d[j];
        } else {
          // 2b. second order: extrapolate D linearly in t from the previous step,
          //     r = h_last / h, D' = (1 + 1/(2r)) D - 1/(2r) D_prev
          const double h = std::log(sigma / sigma_next);
          const double h_last = std::log(static_cast<double>(sigmas[i - 1]) / sigma);
          const double r = h_last / h;
          const float c_new = static_cast<float>(1.0 + 1.0 / (2.0 * r));
          const float c_old = static_cast<float>(1.0 / (2.0 * r));
          const float a = static_cast<float>(sigma_next / sigma);
          const float b = static_cast<float>(-std::expm1(-h));
          for (size_t j = 0; j < n; ++j) x[j] = a * x[j] + b * (c_new * d[j] - c_old * old_denoised[j]);
        }
        // 3. D_prev <- D
        std::copy(d, d + n, old_denoised.begin());
        break;
      }

      case SamplerKind::DpmPP2SA: {
        // 1. D = D(x, sigma)
        const float* d = run.denoise(x, sigma);
        // 2. split the step into sigma_down and sigma_up, as euler_a
        const AncestralStep a = ancestral_step(sigma, sigma_next);
        if (a.down == 0) {
          // 3a. down to 0: x <- D
          std::copy(d, d + n, x);
        } else {
          // 3. single-step DPM-Solver++(2S) from sigma to sigma_down in t = -log(sigma):
          //    h = t_down - t, midpoint s = t + h/2 (sigma_s = sqrt(sigma * sigma_down))
          const double h = std::log(sigma / a.down);
          const double sigma_s = std::exp(-(-std::log(sigma) + 0.5 * h));
          // 4. x2 = (sigma_s / sigma) x - expm1(-h/2) D
          const float a1 = static_cast<float>(sigma_s / sigma);
          const float b1 = static_cast<float>(-std::expm1(-0.5 * h));
          for (size_t j = 0; j < n; ++j) x2[j] = a1 * x[j] + b1 * d[j];
          // 5. D2 = D(x2, sigma_s); x <- (sigma_down / sigma) x - expm1(-h) D2
          const float* d2 = run.denoise(x2.data(), sigma_s, denoised2.data());
          const float a2 = static_cast<float>(a.down / sigma);
          const float b2 = static_cast<float>(-std::expm1(-h));
          for (size_t j = 0; j < n; ++j) x[j] = a2 * x[j] + b2 * d2[j];
        }
        // 6. x <- x + sigma_up * noise (no noise on a last step to 0)
        if (sigma_next > 0) run.add_noise(a.up);
        break;
      }

      case SamplerKind::Lcm: {
        // 1. x <- D(x, sigma): the consistency model's estimate of x0
        const float* d = run.denoise(x, sigma);
        std::copy(d, d + n, x);
        // 2. re-noise to the next level: x <- x + sigma_next * noise (not on the last step)
        if (sigma_next > 0) run.add_noise(sigma_next);
        break;
      }

      case SamplerKind::Ddim:
      case SamplerKind::DdimTrailing: {
        // ddim_trailing is stable-diffusion.cpp's name for the same update (its euler_a with
        // eta 0); what it changes is the default schedule (simple: trailing timesteps).
        // DDIM (Song et al. 2020, eq. 12) with eta = 0, written for x = x_t / sqrt(abar_t)
        // where sigma^2 = (1 - abar) / abar. In these coordinates DDIM is exactly the Euler
        // step of the probability-flow ODE (Karras et al. 2022, sec. 3).
        // 1. D = D(x, sigma): predicted x0
        const float* d = run.denoise(x, sigma);
        // 2. predicted noise eps = (x - x0) / sigma
        // 3. x_next = x0 + sigma_next * eps ("direction pointing to x_t", no random noise)
        const float inv_sigma = static_cast<float>(1.0 / sigma);
        const float next = static_cast<float>(sigma_next);
        for (size_t j = 0; j < n; ++j) {
          const float eps = (x[j] - d[j]) * inv_sigma;
          x[j] = d[j] + next * eps;
        }
        break;
      }
    }
    if (after_step) after_step(i + 1, static_cast<float>(sigma_next), xs);
    job.report(i + 1, steps);
  }
}

}  // namespace sdn
