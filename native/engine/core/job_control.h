// What a running job shares with its caller: a cancel flag and a progress sink. Each job has
// its own; nothing here is process-wide.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/error.h"

namespace sdn {

// A picture that travels with a progress report (a live preview of the step's result):
// interleaved 8-bit pixels, rows top to bottom. Core's own type, since pipeline's Image sits
// above this layer.
struct ProgressImage {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> data;
};

struct Progress {
  int step = 0;      // 1-based, increasing
  int steps = 0;     // total for this job
  double elapsed_ms = 0;
  // Null unless a preview was made at this step. Shared and immutable: a report is copied
  // into the thread hop to JS, the pixels are not.
  std::shared_ptr<const ProgressImage> preview;
};

class JobControl {
 public:
  using ProgressSink = std::function<void(const Progress&)>;

  JobControl() : start_(std::chrono::steady_clock::now()) {}
  // Part of `parent`'s work: cancelled when the parent is, and reporting only through its own
  // sink (none unless set), so a stage can run without its progress mixing into the job's.
  explicit JobControl(const JobControl* parent) : parent_(parent), start_(parent->start_) {}

  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const {
    return cancelled_.load(std::memory_order_relaxed) || (parent_ && parent_->cancelled());
  }
  // Called between units of work: turns a cancel request into an Aborted error.
  void throw_if_cancelled() const {
    if (cancelled()) fail(ErrorCode::Aborted, "the operation was aborted");
  }

  void set_progress_sink(ProgressSink sink) { sink_ = std::move(sink); }
  void report(int step, int steps, std::shared_ptr<const ProgressImage> preview = nullptr) const {
    if (!sink_) return;
    Progress p;
    p.step = step;
    p.steps = steps;
    p.preview = std::move(preview);
    p.elapsed_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
    sink_(p);
  }

 private:
  std::atomic<bool> cancelled_{false};
  const JobControl* parent_ = nullptr;
  ProgressSink sink_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace sdn
