// The hires fix as one job: the first pass at the requested size (as any text-to-image job),
// its latents enlarged to the target size — in latent space with an interpolation filter, or
// in pixel space (VAE decode, Lanczos / nearest / ESRGAN, VAE encode) — and an image-to-image
// pass from them at the target size, then the decode. Progress counts both passes' steps.
#pragma once

#include "pipeline/generate.h"

namespace sdn {

// `p` with p.hires enabled (generate() calls this). Image i's second pass starts from its own
// enlarged latent, with noise from an RNG seeded seed + i (as stable-diffusion.cpp draws it).
// Throws as generate() does; InvalidArgument for hires settings that do not fit the job.
GenerateResult generate_hires(Model& model, const GenerateParams& p, const JobControl& job);

}  // namespace sdn
