// JS class NativeUpscaler over sdn::EsrganUpscaler (lib/upscaler.ts wraps it).
#pragma once

#include <memory>

#include <napi.h>

#include "job.h"
#include "pipeline/upscaler.h"

namespace sdnode {

class NativeUpscaler : public Napi::ObjectWrap<NativeUpscaler> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, AddonData& data);
  explicit NativeUpscaler(const Napi::CallbackInfo& info);
  // The engine behind a NativeUpscaler value (a job's reference); TypeError for anything else,
  // the disposed error once disposed.
  static std::shared_ptr<sdn::EsrganUpscaler> Shared(const Napi::Value& value);

 private:
  // static load(options, onProgress) -> JobHandle<NativeUpscaler>
  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  // upscale(image, { tile, overlap, repeats }, onProgress) -> JobHandle<image>
  Napi::Value Upscale(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  sdn::EsrganUpscaler& engine(Napi::Env env);

  std::shared_ptr<sdn::EsrganUpscaler> engine_;
};

}  // namespace sdnode
