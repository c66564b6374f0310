#include "job.h"

namespace sdnode {

AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

void cancel_and_join_all(AddonData& data) {
  for (JobBase* job : data.live_jobs) job->cancel();
  for (JobBase* job : data.live_jobs) job->join();
  data.live_jobs.clear();
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
