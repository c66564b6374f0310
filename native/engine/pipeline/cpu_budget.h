// One process-wide budget of CPU threads for graph computes. Every model and autoencoder has
// its own runtime, and each CPU compute starts `threads` ggml threads that spin at every graph
// node while they wait for each other: two jobs with a thread per core each put twice as many
// spinning threads as cores on the machine, and both run 4–15× slower than one after the other.
// So a CPU compute first takes its threads from this budget (sized to the cores this process
// may run on), waiting in line while other computes hold them: jobs share the cores graph by
// graph (for the UNet, sampler step by sampler step) instead of fighting over them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>

#include "core/job_control.h"

namespace sdn {

class CpuBudget {
 public:
  // The process's budget: the CPUs this process may run on (its affinity mask where the system
  // has one, else the hardware's thread count).
  static CpuBudget& process();

  explicit CpuBudget(int threads);
  CpuBudget(const CpuBudget&) = delete;
  CpuBudget& operator=(const CpuBudget&) = delete;

  int size() const { return size_; }

  // Threads held for one compute; given back when it goes out of scope.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : budget_(other.budget_), threads_(other.threads_) { other.budget_ = nullptr; }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    int threads() const { return threads_; }

   private:
    friend class CpuBudget;
    Lease(CpuBudget* budget, int threads) : budget_(budget), threads_(threads) {}
    CpuBudget* budget_ = nullptr;
    int threads_ = 0;
  };

  // Waits, first come first served, until `threads` (clamped to 1..size()) are free, and takes
  // them. A cancelled job stops waiting within a few milliseconds: Aborted is thrown and the
  // line moves on.
  Lease acquire(int threads, const JobControl& job);

 private:
  void release(int threads);

  const int size_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int free_;
  uint64_t next_ticket_ = 0;
  std::deque<uint64_t> line_;  // tickets of waiting computes, oldest first
};

}  // namespace sdn
