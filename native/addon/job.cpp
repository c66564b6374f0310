#include "job.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>

namespace sdnode {

AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

namespace {

struct LiveJobs {
  std::mutex mutex;
  std::unordered_map<JobBase*, napi_env> jobs;
};

// Never destroyed: the atexit handler may run after other statics are gone.
LiveJobs& live_jobs() {
  static LiveJobs* jobs = new LiveJobs();
  return *jobs;
}

void stop_all_at_exit() { cancel_and_join_live_jobs(nullptr); }

}  // namespace

void register_live_job(JobBase* job, napi_env env) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(stop_all_at_exit); });
  LiveJobs& live = live_jobs();
  std::lock_guard<std::mutex> lock(live.mutex);
  live.jobs.emplace(job, env);
}

void unregister_live_job(JobBase* job) {
  LiveJobs& live = live_jobs();
  std::lock_guard<std::mutex> lock(live.mutex);
  live.jobs.erase(job);
}

void cancel_and_join_live_jobs(napi_env env) {
  LiveJobs& live = live_jobs();
  std::lock_guard<std::mutex> lock(live.mutex);
  // Job threads never take this lock, so joining under it cannot deadlock.
  for (auto& [job, job_env] : live.jobs) {
    if (!env || job_env == env) job->cancel();
  }
  for (auto it = live.jobs.begin(); it != live.jobs.end();) {
    if (env && it->second != env) {
      ++it;
      continue;
    }
    it->first->join();
    it = live.jobs.erase(it);
  }
}

void JobHandle::Init(Napi::Env env, AddonData& data) {
  Napi::Function ctor = DefineClass(env, "JobHandle", {InstanceMethod<&JobHandle::Cancel>("cancel")});
  data.job_handle_ctor = Napi::Persistent(ctor);
}

JobHandle::JobHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JobHandle>(info) {}

Napi::Object JobHandle::New(Napi::Env env, std::shared_ptr<sdn::JobControl> control, Napi::Promise promise) {
  Napi::Object obj = addon_data(env).job_handle_ctor.New({});
  Unwrap(obj)->control_ = std::move(control);
  obj.Set("promise", promise);
  return obj;
}

Napi::Value JobHandle::Cancel(const Napi::CallbackInfo& info) {
  if (control_) control_->cancel();
  return info.Env().Undefined();
}

}  // namespace sdnode
