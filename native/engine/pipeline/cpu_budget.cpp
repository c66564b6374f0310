#include "pipeline/cpu_budget.h"

#include <algorithm>
#include <chrono>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

namespace sdn {

namespace {

int machine_threads() {
#ifdef __linux__
  // Containers and `taskset` narrow the mask: hardware_concurrency() would count every core.
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

// JobControl has no wake-up of its own; a waiting compute looks at the flag this often.
constexpr auto kCancelPoll = std::chrono::milliseconds(5);

}  // namespace

CpuBudget& CpuBudget::process() {
  static CpuBudget* budget = new CpuBudget(machine_threads());  // never destroyed: jobs may outlive statics
  return *budget;
}

CpuBudget::CpuBudget(int threads) : size_(std::max(1, threads)), free_(size_) {}

CpuBudget::Lease::~Lease() {
  if (budget_) budget_->release(threads_);
}

CpuBudget::Lease& CpuBudget::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (budget_) budget_->release(threads_);
    budget_ = other.budget_;
    threads_ = other.threads_;
    other.budget_ = nullptr;
  }
  return *this;
}

CpuBudget::Lease CpuBudget::acquire(int threads, const JobControl& job) {
  const int want = std::clamp(threads, 1, size_);
  std::unique_lock<std::mutex> lock(mutex_);
  const uint64_t ticket = next_ticket_++;
  line_.push_back(ticket);
  // First in line and enough free threads. A later compute that would fit does not overtake:
  // a wide compute would otherwise wait for ever behind a stream of narrow ones.
  while (!(line_.front() == ticket && free_ >= want)) {
    if (job.cancelled()) {
      line_.erase(std::find(line_.begin(), line_.end(), ticket));
      changed_.notify_all();  // the one behind may now be first
      lock.unlock();
      job.throw_if_cancelled();
    }
    changed_.wait_for(lock, kCancelPoll);
  }
  line_.pop_front();
  free_ -= want;
  changed_.notify_all();  // the next in line may fit in what is left
  return Lease(this, want);
}

void CpuBudget::release(int threads) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    free_ += threads;
  }
  changed_.notify_all();
}

}  // namespace sdn
