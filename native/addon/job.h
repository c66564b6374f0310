// A job runs engine work on its own thread and settles a promise. Progress and completion
// travel through one thread-safe function, so JS sees every progress event, in order, before
// the promise settles. Each job owns its cancel flag; the JS handle's cancel() sets it.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include <napi.h>

#include "core/job_control.h"
#include "convert.h"
#include "errors.h"

namespace sdnode {

class JobBase;

// Per-environment state of the addon.
struct AddonData {
  Napi::FunctionReference job_handle_ctor;
  Napi::FunctionReference autoencoder_ctor;
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference lora_ctor;
  Napi::FunctionReference upscaler_ctor;
  Napi::FunctionReference controlnet_ctor;
};

AddonData& addon_data(Napi::Env env);

// Running jobs, so teardown can stop them before what they use is destroyed: an environment's
// cleanup hook (worker.terminate(), a worker's process.exit()) stops that environment's jobs.
// process.exit() on the main thread calls exit() without running cleanup hooks, so lib/ stops
// them from process 'exit' (stopJobs), and an atexit handler catches any other exit().
// Used for teardown only: each job's cancel flag and progress stay its own.
void register_live_job(JobBase* job, napi_env env);
void unregister_live_job(JobBase* job);
// Cancels and joins the jobs of `env` (all jobs when env is null), forgetting them.
void cancel_and_join_live_jobs(napi_env env);

class JobBase {
 public:
  virtual ~JobBase() = default;
  void cancel() { control_->cancel(); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 protected:
  std::shared_ptr<sdn::JobControl> control_ = std::make_shared<sdn::JobControl>();
  std::thread thread_;
};

// JS: { promise: Promise<T>, cancel(): void }
class JobHandle : public Napi::ObjectWrap<JobHandle> {
 public:
  static void Init(Napi::Env env, AddonData& data);
  explicit JobHandle(const Napi::CallbackInfo& info);
  static Napi::Object New(Napi::Env env, std::shared_ptr<sdn::JobControl> control, Napi::Promise promise);

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  std::shared_ptr<sdn::JobControl> control_;
};

template <typename Result>
class Job : public JobBase {
 public:
  using Work = std::function<Result(sdn::JobControl&)>;
  using Convert = std::function<Napi::Value(Napi::Env, Result&)>;

  // `owner` stays referenced (alive) until the job settles; `on_progress` may be undefined.
  static Napi::Object Start(Napi::Env env, Napi::Object owner, Napi::Value on_progress, Work work, Convert convert) {
    auto* job = new Job(env);
    job->work_ = std::move(work);
    job->convert_ = std::move(convert);
    if (!owner.IsEmpty()) job->owner_ = Napi::Persistent(owner);
    if (on_progress.IsFunction()) job->on_progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
    job->tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function(), "sdnode-job", 0, 1, job,
                                               [](Napi::Env, Job* self) { delete self; });
    register_live_job(job, env);
    Napi::Promise promise = job->deferred_.Promise();
    Napi::Object handle = JobHandle::New(env, job->control_, promise);

    if (!job->on_progress_.IsEmpty()) {
      job->control_->set_progress_sink([job](const sdn::Progress& p) {
        job->tsfn_.NonBlockingCall([job, p](Napi::Env env, Napi::Function) { job->DeliverProgress(env, p); });
      });
    }
    job->thread_ = std::thread([job] { job->Run(); });
    return handle;
  }

 private:
  explicit Job(Napi::Env env) : deferred_(Napi::Promise::Deferred::New(env)) {}

  void Run() {
    try {
      result_.emplace(work_(*control_));
    } catch (...) {
      error_ = describe_current_exception();
    }
    tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function) { Settle(env); });
    tsfn_.Release();
  }

  // Both run as thread-safe-function calls on the JS thread. With C++ exceptions enabled every
  // failing N-API call throws, and while an environment is being torn down (a worker that threw
  // or called process.exit()) any of them can fail; an exception leaving a thread-safe-function
  // call unwinds into Node and terminates the whole process. So nothing may leave these two.
  void DeliverProgress(Napi::Env env, const sdn::Progress& p) noexcept {
    if (settled_ || on_progress_.IsEmpty()) return;
    try {
      Napi::HandleScope scope(env);
      Napi::Object event = Napi::Object::New(env);
      event.Set("step", p.step);
      event.Set("steps", p.steps);
      event.Set("elapsedMs", p.elapsed_ms);
      if (p.preview) {
        const sdn::ProgressImage& image = *p.preview;
        event.Set("preview", pixels_to_js(env, image.width, image.height, image.channels, image.data));
      }
      // lib/ wraps callbacks so they never throw here; a throwing one is ignored.
      on_progress_.Call({event});
    } catch (...) {
      // The environment is going away (or the callback threw): there is no one left to tell.
    }
  }

  void Settle(Napi::Env env) noexcept {
    join();
    settled_ = true;
    unregister_live_job(this);
    try {
      Napi::HandleScope scope(env);
      if (error_) {
        deferred_.Reject(make_error(env, *error_).Value());
      } else {
        try {
          deferred_.Resolve(convert_(env, *result_));
        } catch (const Napi::Error& e) {
          deferred_.Reject(e.Value());
        } catch (...) {
          deferred_.Reject(make_error(env, describe_current_exception()).Value());
        }
      }
    } catch (...) {
      // As in DeliverProgress: a promise nobody can observe any more stays unsettled.
    }
    result_.reset();
    try {
      owner_.Reset();
      on_progress_.Reset();
    } catch (...) {
    }
  }

  Work work_;
  Convert convert_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  Napi::FunctionReference on_progress_;
  Napi::ThreadSafeFunction tsfn_;
  std::optional<Result> result_;
  std::optional<ErrorInfo> error_;
  bool settled_ = false;
};

}  // namespace sdnode
