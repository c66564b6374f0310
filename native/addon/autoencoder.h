// JS class NativeAutoencoder over sdn::TinyAutoencoder (lib/autoencoder.ts wraps it).
#pragma once

#include <memory>

#include <napi.h>

#include "convert.h"
#include "job.h"
#include "pipeline/autoencoder.h"

namespace sdnode {

class NativeAutoencoder : public Napi::ObjectWrap<NativeAutoencoder> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, AddonData& data);
  explicit NativeAutoencoder(const Napi::CallbackInfo& info);

  // The engine behind a JS NativeAutoencoder, for another job to share (generate's TAE
  // previews): null for undefined/null, TypeError for anything else that is not one, and the
  // disposed error for a disposed one.
  static std::shared_ptr<sdn::TinyAutoencoder> Shared(const Napi::Value& value);

 private:
  // static load(options, onProgress) -> JobHandle<NativeAutoencoder>
  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Encode(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);
  Napi::Value ComputeBytes(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  sdn::TinyAutoencoder& engine(Napi::Env env);

  std::shared_ptr<sdn::TinyAutoencoder> engine_;
};

}  // namespace sdnode
