// Module entry: backend loading, system queries, and the classes.
#include <napi.h>

#include "autoencoder.h"
#include "convert.h"
#include "convert_model.h"
#include "device_probe.h"
#include "embedding_file.h"
#include "job.h"
#include "lora.h"
#include "model.h"
#include "model_file.h"
#include "name_map.h"
#include "resize.h"
#include "sampling.h"
#include "upscaler.h"
#include "controlnet.h"
#include "pipeline/backend.h"

namespace sdnode {

namespace {

Napi::Value LoadBackends(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "module directory must be a string");
  sdn::load_backends(info[0].As<Napi::String>().Utf8Value());
  return info.Env().Undefined();
}

Napi::Value ListDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<sdn::DeviceInfo> devices = sdn::list_devices();
  Napi::Array out = Napi::Array::New(env, devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    const sdn::DeviceInfo& d = devices[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", d.id);
    o.Set("backend", d.backend);
    o.Set("name", d.name);
    o.Set("description", d.description);
    o.Set("type", d.type);
    o.Set("memoryFree", static_cast<double>(d.memory_free));
    o.Set("memoryTotal", static_cast<double>(d.memory_total));
    out.Set(i, o);
  }
  return out;
}

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sdn::SystemInfo s = sdn::system_info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("ggmlVersion", s.ggml_version);
  o.Set("ggmlCommit", s.ggml_commit);
  o.Set("backends", strings_to_js(env, s.backends));
  Napi::Object features = Napi::Object::New(env);
  for (auto& [name, value] : s.cpu_features) features.Set(name, value);
  o.Set("cpuFeatures", features);
  return o;
}

// Cancels and joins this environment's running jobs. lib/ calls it from process 'exit', which
// comes before exit() tears down static state that a computing job still uses.
Napi::Value StopJobs(const Napi::CallbackInfo& info) {
  cancel_and_join_live_jobs(info.Env());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  // Runs before this environment's objects are finalized: running jobs must stop first.
  napi_env raw = env;
  env.AddCleanupHook([raw] { cancel_and_join_live_jobs(raw); });
  JobHandle::Init(env, *data);
  NativeAutoencoder::Init(env, exports, *data);
  NativeModel::Init(env, exports, *data);
  NativeLora::Init(env, exports, *data);
  NativeUpscaler::Init(env, exports, *data);
  NativeControlNet::Init(env, exports, *data);
  InitModelFile(env, exports);
  InitEmbeddingFile(env, exports);
  InitConvertModel(env, exports);
  InitNameMap(env, exports);
  InitSampling(env, exports);
  InitResize(env, exports);
  exports.Set("loadBackends", Napi::Function::New(env, LoadBackends, "loadBackends"));
  exports.Set("listDevices", Napi::Function::New(env, ListDevices, "listDevices"));
  exports.Set("systemInfo", Napi::Function::New(env, SystemInfo, "systemInfo"));
  exports.Set("stopJobs", Napi::Function::New(env, StopJobs, "stopJobs"));
  InitDeviceProbe(env, exports);
  return exports;
}

}  // namespace

}  // namespace sdnode

static Napi::Object InitSdnode(Napi::Env env, Napi::Object exports) { return sdnode::Init(env, exports); }

NODE_API_MODULE(sdnode, InitSdnode)
