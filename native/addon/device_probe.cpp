// probeDevice(id: string) -> { ok: boolean, error: string, maxError: number, ms: number }
#include "device_probe.h"

#include "pipeline/device_probe.h"

namespace sdnode {

namespace {

Napi::Value ProbeDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "probeDevice(id): id must be a string");
  const sdn::ProbeResult r = sdn::probe_device(info[0].As<Napi::String>().Utf8Value());
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", r.ok);
  o.Set("error", r.error);
  o.Set("maxError", r.max_error);
  o.Set("ms", r.ms);
  return o;
}

}  // namespace

void InitDeviceProbe(Napi::Env env, Napi::Object exports) {
  exports.Set("probeDevice", Napi::Function::New(env, ProbeDevice, "probeDevice"));
}

}  // namespace sdnode
