// Samplers in the k-diffusion formulation: the latent x = x0 + sigma * noise is integrated
// from sigmas[0] down to sigmas.back() (normally 0) using a denoiser D(x, sigma) ~ E[x0 | x].
//
// Contract:
//   - x holds the starting latent. For text-to-image the caller sets x = noise * sigmas[0]
//     (noise from the job's Rng, drawn before sample() is called); for image-to-image
//     x = x0 + noise * sigmas[0] with the sigmas cut at the strength. sample() adds no
//     starting noise.
//   - denoiser(x, sigma, out) writes D(x, sigma) for all x.size() values (the caller applies
//     c_in / c_out / c_skip, the UNet and classifier-free guidance inside it). It may throw;
//     the exception propagates.
//   - sigmas: at least 2 values, finite, strictly decreasing, the last one >= 0 (normally 0;
//     img2img passes a tail of a schedule). steps = sigmas.size() - 1. x is not empty.
//     Anything else is an InvalidArgument error before the first model call.
//   - rng: ancestral noise, one rng.randn(x.size()) call per step that adds noise (after the
//     model calls of that step), as stable-diffusion.cpp and k-diffusion draw it.
//   - job: cancellation is checked before every step (Aborted error); one progress report
//     (step i+1 of steps) after every step, whatever the number of model calls in it.
//   - after_step (optional): called after every step, before its progress report, with the
//     step's end sigma and x, which it may change (inpainting puts back the known latent).
// The sampler names and their descriptions: sample/catalog.h.
#pragma once

#include <functional>
#include <vector>

#include "core/job_control.h"
#include "sample/catalog.h"
#include "sample/rng.h"

namespace sdn {

using Denoiser = std::function<void(const float* x, float sigma, float* denoised)>;
using StepHook = std::function<void(int step, float sigma_next, std::vector<float>& x)>;

void sample(SamplerKind kind, std::vector<float>& x, const std::vector<float>& sigmas, const Denoiser& denoiser,
            Rng& rng, JobControl& job, const StepHook& after_step = nullptr);

}  // namespace sdn
