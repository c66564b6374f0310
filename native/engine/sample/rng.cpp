#include "sample/rng.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace sdn {

RngKind parse_rng_kind(const std::string& name) {
  if (name == "cuda") return RngKind::Cuda;
  if (name == "cpu") return RngKind::Cpu;
  fail(ErrorCode::InvalidArgument, "unknown rng '" + name + "' (expected 'cuda' or 'cpu')");
}

const char* rng_kind_name(RngKind kind) { return kind == RngKind::Cuda ? "cuda" : "cpu"; }

std::unique_ptr<Rng> make_rng(RngKind kind, uint64_t seed) {
  if (kind == RngKind::Cuda) return std::make_unique<CudaRng>(seed);
  return std::make_unique<CpuRng>(seed);
}

// ---- Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011) ----

namespace {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // key bump per round (golden ratio)
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // key bump per round (sqrt(3) - 1)

struct Block {
  uint32_t c[4];
};

// Ten rounds on counter c with key (k0, k1); the key is bumped between rounds.
inline Block philox4x32_10(Block b, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(b.c[0]) * kPhiloxM0;
    const uint64_t p1 = static_cast<uint64_t>(b.c[2]) * kPhiloxM1;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    b = Block{{hi1 ^ b.c[1] ^ k0, lo1, hi0 ^ b.c[3] ^ k1, lo0}};
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return b;
}

// curand's Box-Muller constants: 2^-32 and 2^-32 * 2pi, as float literals.
constexpr float kTwoPow32Inv = 2.3283064e-10f;
constexpr float kTwoPow32Inv2Pi = 2.3283064e-10f * 6.2831855f;

// a * b rounded once to float. The exact product of two floats fits a double, so this is
// the IEEE float product; written this way no compiler can fuse it with a following add
// (an FMA rounds differently, and the reference values come from a separate multiply and add).
inline float float_product(float a, float b) {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
}

}  // namespace

void CudaRng::randn(float* out, size_t n) {
  if (n > std::numeric_limits<uint32_t>::max()) {
    fail(ErrorCode::InvalidArgument, "cuda rng: at most 2^32 - 1 values per call");
  }
  const uint32_t key0 = static_cast<uint32_t>(seed_);
  const uint32_t key1 = static_cast<uint32_t>(seed_ >> 32);
  const uint32_t offset = offset_++;
  for (size_t i = 0; i < n; ++i) {
    const Block g = philox4x32_10(Block{{offset, 0u, static_cast<uint32_t>(i), 0u}}, key0, key1);
    // Box-Muller in float: u in (0, 1] from the first word, angle from the second; the sin
    // branch is the value (the cos branch and words 3 and 4 are discarded).
    const float u = float_product(static_cast<float>(g.c[0]), kTwoPow32Inv) + kTwoPow32Inv / 2;
    const float v = float_product(static_cast<float>(g.c[1]), kTwoPow32Inv2Pi) + kTwoPow32Inv2Pi / 2;
    const float radius = std::sqrt(-2.0f * std::log(u));
    out[i] = radius * std::sin(v);
  }
}

// ---- torch CPU: mt19937 + at::uniform_real_distribution + normal_fill / normal_distribution ----

float CpuRng::uniform_float() {
  // at::uniform_real_distribution<float>: the low 24 bits of one 32-bit draw, times 2^-24.
  return static_cast<float>(engine_() & ((1u << 24) - 1)) * (1.0f / static_cast<float>(1u << 24));
}

double CpuRng::uniform_double() {
  // random64() = (first draw << 32) | second draw; the low 53 bits, times 2^-53.
  const uint64_t hi = engine_();
  const uint64_t lo = engine_();
  const uint64_t bits = ((hi << 32) | lo) & ((uint64_t{1} << 53) - 1);
  return static_cast<double>(bits) * (1.0 / static_cast<double>(uint64_t{1} << 53));
}

double CpuRng::normal_double() {
  if (next_normal_) {
    const double v = *next_normal_;
    next_normal_.reset();
    return v;
  }
  // at::normal_distribution<double>: u1 sets the angle, u2 the radius; cos now, sin cached.
  const double u1 = uniform_double();
  const double u2 = uniform_double();
  const double radius = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * 3.14159265358979323846 * u1;
  next_normal_ = radius * std::sin(theta);
  return radius * std::cos(theta);
}

namespace {

// torch normal_fill_16: 16 uniforms in place -> 16 normals; the first 8 give the radius
// (1 - u, so log never sees 0), the last 8 the angle; cos goes to the front, sin to the back.
void normal_fill_16(float* data) {
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - data[j];
    const float u2 = data[j + 8];
    const float radius = std::sqrt(-2.0f * std::log(u1));
    const float theta = static_cast<float>(2.0 * 3.14159265358979323846) * u2;
    data[j] = radius * std::cos(theta);
    data[j + 8] = radius * std::sin(theta);
  }
}

}  // namespace

void CpuRng::randn(float* out, size_t n) {
  if (n < 16) {
    // torch's path for small (or non-contiguous) tensors: one double normal per element,
    // sharing the generator's cached Box-Muller value across calls.
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(normal_double());
    return;
  }
  // 1. n uniforms, in order.
  for (size_t i = 0; i < n; ++i) out[i] = uniform_float();
  // 2. Box-Muller over each whole block of 16.
  for (size_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
  // 3. A partial tail: the last 16 positions get 16 fresh uniforms and are transformed again
  //    (overwriting up to 15 finished values of the last whole block).
  if (n % 16 != 0) {
    float* tail = out + n - 16;
    for (size_t i = 0; i < 16; ++i) tail[i] = uniform_float();
    normal_fill_16(tail);
  }
}

}  // namespace sdn
