// JS class NativeControlNet over sdn::ControlNet (lib/controlnet.ts wraps it): a ControlNet
// file loaded for one model, made by NativeModel.loadControlNet.
#pragma once

#include <memory>
#include <string>

#include <napi.h>

#include "job.h"
#include "pipeline/controlnet.h"

namespace sdnode {

class NativeControlNet : public Napi::ObjectWrap<NativeControlNet> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, AddonData& data);
  explicit NativeControlNet(const Napi::CallbackInfo& info);

  // The load job NativeModel.loadControlNet(path, { device, threads }, onProgress) starts: the
  // file read, checked against `model`'s UNet (holding its compute lock), uploaded.
  static Napi::Value Load(const Napi::CallbackInfo& info, std::shared_ptr<sdn::Model> model);
  // generate's `controlNets` [{ controlNet, image, strength, start, end }], or undefined.
  static std::vector<sdn::ControlNetUse> Uses(const Napi::Value& list);

 private:
  // { convention, format, device, blocks, modelChannels, contextDim, admChannels, weightBytes, dropped }
  Napi::Value Info(const Napi::CallbackInfo& info);
  // Test-facing: residuals({ x, timesteps, context, y?, hint, batch, width, height, tokens, heads, headDim })
  // -> JobHandle<Float32Array[]>: one evaluation of the network alone (no UNet), unscaled.
  Napi::Value Residuals(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  sdn::ControlNet& engine(Napi::Env env);

  std::shared_ptr<sdn::ControlNet> engine_;
};

}  // namespace sdnode
