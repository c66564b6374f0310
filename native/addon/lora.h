// JS class NativeLora over sdn::Lora (lib/lora.ts wraps it): a LoRA file matched to one model,
// made by NativeModel.loadLora.
#pragma once

#include <memory>

#include <napi.h>

#include "job.h"
#include "lora/lora.h"

namespace sdnode {

class NativeLora : public Napi::ObjectWrap<NativeLora> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, AddonData& data);
  explicit NativeLora(const Napi::CallbackInfo& info);

  // A JS NativeLora made from `lora` (on the JS thread, when its load job settles).
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<const sdn::Lora> lora);
  // The engine behind a JS NativeLora, for a generate job to share: TypeError for anything
  // that is not one, the disposed error for a disposed one.
  static std::shared_ptr<const sdn::Lora> Shared(const Napi::Value& value);

 private:
  // { path, fileBytes, tensors, appliedTensors, targets: [{ weight, kind, rank, scale, dora }],
  //   unmatched: string[], incompatible: string[] }
  Napi::Value Report(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  const sdn::Lora& engine(Napi::Env env);

  std::shared_ptr<const sdn::Lora> engine_;
};

}  // namespace sdnode
