// Seeded normal noise in the two conventions users rely on for "same seed, same image":
//
//   CudaRng  torch.randn on a CUDA device as the stable-diffusion-webui "GPU" seed and
//            stable-diffusion.cpp reproduce it on the host: Philox4x32-10 keyed by the seed,
//            one counter per element, one Box-Muller value per element.
//   CpuRng   torch.randn on the CPU: mt19937 seeded with the low 32 bits of the seed, and
//            torch's two normal paths (below 16 elements: double Box-Muller with a cached
//            second value; 16 and more: float Box-Muller over blocks of 16 uniforms).
//
// Both keep their state between calls, so a sampler that draws fresh noise every step gets
// the same stream those tools get: the initial latent is call 0, the first ancestral noise
// call 1, and so on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>

namespace sdn {

class Rng {
 public:
  virtual ~Rng() = default;
  // Writes n standard normal values to out; consecutive calls continue the stream.
  virtual void randn(float* out, size_t n) = 0;
};

enum class RngKind { Cuda, Cpu };

// "cuda" or "cpu"; anything else is an InvalidArgument error.
RngKind parse_rng_kind(const std::string& name);
const char* rng_kind_name(RngKind kind);

std::unique_ptr<Rng> make_rng(RngKind kind, uint64_t seed);

// torch CUDA randn. Call k (k = 0, 1, ...) of n values gives element i the Philox block of
// counter (k, 0, i, 0) and key (seed low 32 bits, seed high 32 bits); the element is the first
// Box-Muller value (sin branch) of that block's first two words, computed in float. One call
// holds at most 2^32 elements.
class CudaRng final : public Rng {
 public:
  explicit CudaRng(uint64_t seed) : seed_(seed) {}
  void randn(float* out, size_t n) override;

 private:
  uint64_t seed_;
  uint32_t offset_ = 0;  // calls made so far
};

// torch CPU randn (torch.manual_seed(seed); torch.randn(n) ...), float32 output.
class CpuRng final : public Rng {
 public:
  explicit CpuRng(uint64_t seed) : engine_(static_cast<uint32_t>(seed)) {}
  void randn(float* out, size_t n) override;

 private:
  float uniform_float();    // 24 random bits of one draw: [0, 1)
  double uniform_double();  // 53 random bits of two draws: [0, 1)
  double normal_double();   // Box-Muller in double; the sin value waits for the next call

  std::mt19937 engine_;
  std::optional<double> next_normal_;  // torch's cached second Box-Muller value
};

}  // namespace sdn
