// exports.sampling: the engine's RNGs, noise schedules and samplers, called synchronously on
// small host arrays so tests can check them against reference values and exact solutions.
//
//   samplers, schedulers: string[]     the engine's names (sample/catalog.h), in its order
//   defaultSchedulers: { [sampler]: scheduler }   the scheduler each sampler runs with by default
//   randn(rng: 'cuda' | 'cpu', seed: bigint | number, count: number | number[]): Float32Array
//       count as an array: consecutive calls on one generator, concatenated.
//   sigmas(scheduler, steps): Float32Array                      (SD1.x discrete schedule)
//   sigmaToTimestep(sigma): number                   (its fractional training timestep)
//   sampleGaussian({ sampler, scheduler, steps, seed, rng, mu, s, count,
//                    onProgress?(step, steps), cancelAfter? }): Float32Array
//       runs a sampler with the exact denoiser of data x0 ~ N(mu, s^2) per element,
//       D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2), from x = randn(count) * sigmas[0].
//   denoise({ prediction: 'epsilon' | 'v', sigma, x: Float32Array, predictions: Float32Array,
//             cfgScale }): { denoised, modelInput, timestep }
//       one call of the engine's denoiser (sample/denoiser.h) whose model returns `predictions`
//       (one latent of x's length, or two: [uncond, cond] with guidance), and what it gave the
//       model: the scaled latent and the fractional timestep.
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/job_control.h"
#include "errors.h"
#include "sample/catalog.h"
#include "sample/denoiser.h"
#include "sample/rng.h"
#include "sample/samplers.h"
#include "sample/schedule.h"

namespace sdnode {

namespace {

constexpr double kMaxCount = 1 << 24;  // values per call: plenty for tests, bounded memory

[[noreturn]] void type_error(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }
[[noreturn]] void range_error(Napi::Env env, const std::string& message) { throw Napi::RangeError::New(env, message); }

// Engine name parsers throw InvalidArgument; here that is a RangeError with the same message.
template <typename F>
auto parse_name(Napi::Env env, const Napi::Value& v, const char* what, F parse) {
  if (!v.IsString()) type_error(env, std::string(what) + " must be a string");
  try {
    return parse(v.As<Napi::String>().Utf8Value());
  } catch (const sdn::Error& e) {
    range_error(env, e.what());
  }
}

uint64_t get_seed(Napi::Env env, const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless = false;
    const uint64_t seed = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) range_error(env, "seed must be between 0 and 2^64 - 1");
    return seed;
  }
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 9007199254740991.0 && std::floor(d) == d)) {
      range_error(env, "seed must be a non-negative safe integer (use a bigint above 2^53 - 1)");
    }
    return static_cast<uint64_t>(d);
  }
  type_error(env, "seed must be a bigint or a number");
}

int get_int(Napi::Env env, const Napi::Value& v, const char* what, double lo, double hi) {
  if (!v.IsNumber()) type_error(env, std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi && std::floor(d) == d)) {
    range_error(env, std::string(what) + " must be an integer between " + std::to_string(static_cast<int64_t>(lo)) +
                         " and " + std::to_string(static_cast<int64_t>(hi)));
  }
  return static_cast<int>(d);
}

double get_finite(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) type_error(env, std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) range_error(env, std::string(what) + " must be finite");
  return d;
}

Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& values) {
  Napi::Float32Array out = Napi::Float32Array::New(env, values.size());
  std::copy(values.begin(), values.end(), out.Data());
  return out;
}

// Runs engine code; its errors become JS errors with a code.
template <typename F>
auto engine_call(Napi::Env env, F f) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, describe_current_exception());
  }
}

Napi::Value Randn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3) type_error(env, "randn(rng, seed, count): three arguments expected");
  const sdn::RngKind kind = parse_name(env, info[0], "rng", sdn::parse_rng_kind);
  const uint64_t seed = get_seed(env, info[1]);
  std::vector<size_t> counts;
  if (info[2].IsArray()) {
    Napi::Array list = info[2].As<Napi::Array>();
    if (list.Length() < 1 || list.Length() > 64) range_error(env, "count: 1 to 64 calls expected");
    double total = 0;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      counts.push_back(static_cast<size_t>(get_int(env, list.Get(i), "count", 0, kMaxCount)));
      total += static_cast<double>(counts.back());
    }
    if (total > kMaxCount) range_error(env, "count: at most 2^24 values in all");
  } else {
    counts.push_back(static_cast<size_t>(get_int(env, info[2], "count", 0, kMaxCount)));
  }
  std::vector<float> values;
  engine_call(env, [&] {
    auto rng = sdn::make_rng(kind, seed);
    for (size_t n : counts) {
      const size_t at = values.size();
      values.resize(at + n);
      rng->randn(values.data() + at, n);
    }
    return 0;
  });
  return to_js(env, values);
}

Napi::Value Sigmas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) type_error(env, "sigmas(scheduler, steps): two arguments expected");
  const sdn::SchedulerKind kind = parse_name(env, info[0], "scheduler", sdn::parse_scheduler);
  const int steps = get_int(env, info[1], "steps", 1, 10000);
  // A step count the scheduler cannot make (lcm beyond 50) is a bad argument: RangeError.
  std::vector<float> sigmas = engine_call(env, [&] {
    try {
      return sdn::make_sigmas(kind, steps, sdn::DiscreteSchedule());
    } catch (const sdn::Error& e) {
      if (e.code() == sdn::ErrorCode::InvalidArgument) range_error(env, e.what());
      throw;
    }
  });
  return to_js(env, sigmas);
}

Napi::Value SigmaToTimestep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) type_error(env, "sigmaToTimestep(sigma): one argument expected");
  const double sigma = get_finite(env, info[0], "sigma");
  if (!(sigma > 0)) range_error(env, "sigma must be > 0");
  const float t = engine_call(env, [&] { return sdn::DiscreteSchedule().sigma_to_t(static_cast<float>(sigma)); });
  return Napi::Number::New(env, t);
}

Napi::Value SampleGaussian(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray()) type_error(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  const sdn::SamplerKind sampler = parse_name(env, o.Get("sampler"), "sampler", sdn::parse_sampler);
  const sdn::SchedulerKind scheduler = parse_name(env, o.Get("scheduler"), "scheduler", sdn::parse_scheduler);
  const int steps = get_int(env, o.Get("steps"), "steps", 1, 10000);
  const uint64_t seed = get_seed(env, o.Get("seed"));
  const sdn::RngKind rng_kind = parse_name(env, o.Get("rng"), "rng", sdn::parse_rng_kind);
  const double mu = get_finite(env, o.Get("mu"), "mu");
  const double s = get_finite(env, o.Get("s"), "s");
  if (!(s > 0)) range_error(env, "s must be > 0");
  const size_t count = static_cast<size_t>(get_int(env, o.Get("count"), "count", 1, kMaxCount));
  Napi::Value on_progress = o.Get("onProgress");
  if (!on_progress.IsUndefined() && !on_progress.IsFunction()) type_error(env, "onProgress must be a function");
  Napi::Value cancel_after_v = o.Get("cancelAfter");
  const int cancel_after = cancel_after_v.IsUndefined() ? -1 : get_int(env, cancel_after_v, "cancelAfter", 0, 10000);

  sdn::JobControl job;
  if (cancel_after == 0) job.cancel();
  // Sync call on the JS thread: the sink may call into JS directly.
  job.set_progress_sink([&](const sdn::Progress& p) {
    if (on_progress.IsFunction()) {
      on_progress.As<Napi::Function>().Call({Napi::Number::New(env, p.step), Napi::Number::New(env, p.steps)});
    }
    if (p.step == cancel_after) job.cancel();
  });

  std::vector<float> x = engine_call(env, [&] {
    const std::vector<float> sigmas = sdn::make_sigmas(scheduler, steps, sdn::DiscreteSchedule());
    auto rng = sdn::make_rng(rng_kind, seed);
    std::vector<float> x(count);
    // The caller's part of the contract: the starting latent is noise * sigmas[0].
    rng->randn(x.data(), count);
    for (float& v : x) v *= sigmas[0];
    const double s2 = s * s;
    sdn::Denoiser denoiser = [&](const float* in, float sigma, float* out) {
      const double sg2 = static_cast<double>(sigma) * sigma;
      const double a = s2 / (s2 + sg2), b = sg2 * mu / (s2 + sg2);
      for (size_t j = 0; j < count; ++j) out[j] = static_cast<float>(a * in[j] + b);
    };
    sdn::sample(sampler, x, sigmas, denoiser, *rng, job);
    return x;
  });
  return to_js(env, x);
}

Napi::Float32Array get_floats(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(env, std::string(what) + " must be a Float32Array");
  return v.As<Napi::Float32Array>();
}

Napi::Value Denoise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray()) type_error(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value pv = o.Get("prediction");
  if (!pv.IsString()) type_error(env, "prediction must be 'epsilon' or 'v'");
  const std::string p = pv.As<Napi::String>().Utf8Value();
  if (p != "epsilon" && p != "v") range_error(env, "prediction must be 'epsilon' or 'v'");
  const double sigma = get_finite(env, o.Get("sigma"), "sigma");
  if (!(sigma > 0)) range_error(env, "sigma must be > 0");
  const Napi::Float32Array xv = get_floats(env, o.Get("x"), "x");
  const Napi::Float32Array pred = get_floats(env, o.Get("predictions"), "predictions");
  const double cfg = get_finite(env, o.Get("cfgScale"), "cfgScale");
  const size_t n = xv.ElementLength();
  if (n == 0 || n > kMaxCount) range_error(env, "x must hold 1 to 2^24 values");
  if (pred.ElementLength() != n && pred.ElementLength() != 2 * n) range_error(env, "predictions must hold one or two latents of x's length");
  const std::vector<float> x(xv.Data(), xv.Data() + n), given(pred.Data(), pred.Data() + pred.ElementLength());
  std::vector<float> denoised(n), model_input(n);
  float timestep = 0;
  engine_call(env, [&] {
    const sdn::DiscreteSchedule schedule;
    const sdn::GuidanceParams guidance{static_cast<int>(given.size() / n), static_cast<float>(cfg)};
    const sdn::Denoiser d = sdn::make_denoiser(p == "v" ? sdn::Prediction::V : sdn::Prediction::Epsilon, schedule, n, guidance,
                                               [&](const float* x_in, float t, std::vector<float>& out) {
                                                 std::copy(x_in, x_in + n, model_input.begin());
                                                 timestep = t;
                                                 out = given;
                                               });
    d(x.data(), static_cast<float>(sigma), denoised.data());
    return 0;
  });
  Napi::Object out = Napi::Object::New(env);
  out.Set("denoised", to_js(env, denoised));
  out.Set("modelInput", to_js(env, model_input));
  out.Set("timestep", Napi::Number::New(env, timestep));
  return out;
}

// The names of a catalog table, frozen so that no caller edits the engine's list.
template <typename Entry, size_t N>
Napi::Array names_of(Napi::Env env, const Entry (&table)[N]) {
  Napi::Array names = Napi::Array::New(env, N);
  for (size_t i = 0; i < N; ++i) names.Set(static_cast<uint32_t>(i), Napi::String::New(env, table[i].name));
  names.Freeze();
  return names;
}

Napi::Object default_schedulers(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  for (const sdn::SamplerInfo& s : sdn::kSamplers) out.Set(s.name, sdn::scheduler_name(s.default_scheduler));
  out.Freeze();
  return out;
}

}  // namespace

void InitSampling(Napi::Env env, Napi::Object exports) {
  Napi::Object sampling = Napi::Object::New(env);
  sampling.Set("samplers", names_of(env, sdn::kSamplers));
  sampling.Set("schedulers", names_of(env, sdn::kSchedulers));
  sampling.Set("defaultSchedulers", default_schedulers(env));
  sampling.Set("randn", Napi::Function::New(env, Randn, "randn"));
  sampling.Set("sigmas", Napi::Function::New(env, Sigmas, "sigmas"));
  sampling.Set("sigmaToTimestep", Napi::Function::New(env, SigmaToTimestep, "sigmaToTimestep"));
  sampling.Set("sampleGaussian", Napi::Function::New(env, SampleGaussian, "sampleGaussian"));
  sampling.Set("denoise", Napi::Function::New(env, Denoise, "denoise"));
  exports.Set("sampling", sampling);
}

}  // namespace sdnode
