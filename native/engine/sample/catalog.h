// The samplers and schedulers the engine offers, in one table each: their names (as
// stable-diffusion.cpp and the webui spell them), a one-line description, and for a sampler
// the scheduler it runs with when the caller names none. The name parsers, the addon's exported
// lists and the library's validation all read these tables, so a name exists everywhere or
// nowhere.
#pragma once

#include <string>

namespace sdn {

enum class SamplerKind { EulerA, Euler, Heun, Dpm2, DpmPP2M, DpmPP2SA, Lcm, Ddim, DdimTrailing };

enum class SchedulerKind { Discrete, Karras, Exponential, SgmUniform, Simple, Lcm };

struct SchedulerInfo {
  const char* name;
  SchedulerKind kind;
  const char* doc;
};

inline constexpr SchedulerInfo kSchedulers[] = {
    {"discrete", SchedulerKind::Discrete, "the model's sigmas at timesteps evenly spaced from T-1 to 0"},
    {"karras", SchedulerKind::Karras, "Karras et al. (2022) eq. 5, rho 7, between the model's sigma range"},
    {"exponential", SchedulerKind::Exponential, "evenly spaced in log sigma over the model's sigma range"},
    {"sgm_uniform", SchedulerKind::SgmUniform, "timesteps evenly spaced from T-1 towards 0, 0 itself left out"},
    {"simple", SchedulerKind::Simple, "every (T/steps)-th training timestep from T-1 down (trailing spacing)"},
    {"lcm", SchedulerKind::Lcm, "the LCM training timesteps: 50 evenly spaced ones, steps of them taken"},
};

struct SamplerInfo {
  const char* name;
  SamplerKind kind;
  SchedulerKind default_scheduler;  // stable-diffusion.cpp's default for this sampler
  const char* doc;
};

inline constexpr SamplerInfo kSamplers[] = {
    {"euler_a", SamplerKind::EulerA, SchedulerKind::Discrete, "Euler ancestral, eta 1 (k-diffusion)"},
    {"euler", SamplerKind::Euler, SchedulerKind::Discrete, "Euler, no churn (Karras et al. 2022, alg. 2)"},
    {"heun", SamplerKind::Heun, SchedulerKind::Discrete, "Heun's 2nd order (Karras et al. 2022, alg. 1)"},
    {"dpm2", SamplerKind::Dpm2, SchedulerKind::Discrete, "DPM-Solver-2, midpoint in log sigma"},
    {"dpm++2m", SamplerKind::DpmPP2M, SchedulerKind::Discrete, "DPM-Solver++(2M) multistep (Lu et al. 2022)"},
    {"dpm++2s_a", SamplerKind::DpmPP2SA, SchedulerKind::Discrete, "DPM-Solver++(2S) ancestral, eta 1"},
    {"lcm", SamplerKind::Lcm, SchedulerKind::Lcm, "Latent Consistency Model multistep: x0 estimate, re-noised"},
    {"ddim", SamplerKind::Ddim, SchedulerKind::Discrete, "DDIM, eta 0 (Song et al. 2020), in the sigma form"},
    {"ddim_trailing", SamplerKind::DdimTrailing, SchedulerKind::Simple,
     "DDIM, eta 0, on trailing timesteps by default (few-step distilled models)"},
};

// Names above; anything else is an InvalidArgument error listing the known ones.
SamplerKind parse_sampler(const std::string& name);
const char* sampler_name(SamplerKind kind);
SchedulerKind parse_scheduler(const std::string& name);
const char* scheduler_name(SchedulerKind kind);
SchedulerKind default_scheduler(SamplerKind kind);

}  // namespace sdn
