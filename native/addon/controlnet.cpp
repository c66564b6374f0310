#include "controlnet.h"

#include <cmath>
#include <mutex>

#include "convert.h"

namespace sdnode {

void NativeControlNet::Init(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function ctor = DefineClass(env, "NativeControlNet",
                                    {
                                        InstanceMethod<&NativeControlNet::Info>("info"),
                                        InstanceMethod<&NativeControlNet::Residuals>("residuals"),
                                        InstanceMethod<&NativeControlNet::Dispose>("dispose"),
                                    });
  data.controlnet_ctor = Napi::Persistent(ctor);
  exports.Set("NativeControlNet", ctor);
}

NativeControlNet::NativeControlNet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeControlNet>(info) {
  // Only Load() makes usable instances: it passes the engine as an External.
  if (info.Length() == 1 && info[0].IsExternal()) {
    engine_ = *info[0].As<Napi::External<std::shared_ptr<sdn::ControlNet>>>().Data();
  }
}

Napi::Value NativeControlNet::Load(const Napi::CallbackInfo& info, std::shared_ptr<sdn::Model> model) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "loadControlNet(path: string, { device })");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = info[1].As<Napi::Object>();
  const std::string device = get_string(o, "device", true);
  using Ptr = std::shared_ptr<sdn::ControlNet>;
  return Job<Ptr>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 2 ? info[2] : env.Undefined(),
      [model, path, device](sdn::JobControl& job) {
        job.throw_if_cancelled();
        // The UNet's weights are read as the base ones: no job may patch them meanwhile.
        std::lock_guard<std::mutex> lock(model->compute_mutex());
        return std::make_shared<sdn::ControlNet>(path, *model, device, &job);
      },
      [](Napi::Env env, Ptr& engine) -> Napi::Value {
        Napi::External<Ptr> external = Napi::External<Ptr>::New(env, &engine);
        return addon_data(env).controlnet_ctor.New({external});
      });
}

std::vector<sdn::ControlNetUse> NativeControlNet::Uses(const Napi::Value& list) {
  Napi::Env env = list.Env();
  std::vector<sdn::ControlNetUse> uses;
  if (list.IsUndefined()) return uses;
  if (!list.IsArray()) throw Napi::TypeError::New(env, "controlNets must be an array");
  Napi::Array a = list.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Napi::TypeError::New(env, "controlNets must be an array of objects");
    Napi::Object o = e.As<Napi::Object>();
    Napi::Value handle = o.Get("controlNet");
    if (!handle.IsObject() || !handle.As<Napi::Object>().InstanceOf(addon_data(env).controlnet_ctor.Value()))
      throw Napi::TypeError::New(env, "controlNets[].controlNet must be a NativeControlNet");
    NativeControlNet* self = Unwrap(handle.As<Napi::Object>());
    self->engine(env);  // throws if disposed
    sdn::ControlNetUse use;
    use.net = self->engine_;
    use.image = image_from_js(o.Get("image"));
    if (!o.Get("hiresImage").IsUndefined()) use.hires_image = image_from_js(o.Get("hiresImage"));
    const auto number = [&](const char* key) {
      Napi::Value v = o.Get(key);
      if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
        throw Napi::TypeError::New(env, std::string("controlNets[].") + key + " must be a finite number");
      return v.As<Napi::Number>().FloatValue();
    };
    use.strength = number("strength");
    use.start = number("start");
    use.end = number("end");
    uses.push_back(std::move(use));
  }
  return uses;
}

sdn::ControlNet& NativeControlNet::engine(Napi::Env env) {
  if (!engine_) {
    Napi::Error e = Napi::Error::New(env, "the ControlNet has been disposed");
    e.Set("code", Napi::String::New(env, "ERR_DISPOSED"));
    throw e;
  }
  return *engine_;
}

Napi::Value NativeControlNet::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const sdn::ControlNetInfo& i = engine(env).info();
  Napi::Object out = Napi::Object::New(env);
  out.Set("convention", i.convention);
  out.Set("format", i.format);
  out.Set("device", i.device);
  out.Set("blocks", i.blocks);
  out.Set("modelChannels", static_cast<double>(i.model_channels));
  out.Set("contextDim", static_cast<double>(i.context_dim));
  out.Set("admChannels", static_cast<double>(i.adm_channels));
  out.Set("weightBytes", static_cast<double>(i.weight_bytes));
  out.Set("dropped", static_cast<double>(i.dropped));
  return out;
}

Napi::Value NativeControlNet::Residuals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "residuals(params: object)");
  Napi::Object o = info[0].As<Napi::Object>();
  const auto floats = [&](const char* key) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return std::vector<float>();
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, std::string(key) + " must be a Float32Array");
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
  };
  std::vector<float> x = floats("x"), timesteps = floats("timesteps"), context = floats("context"), y = floats("y");
  sdn::Image hint = image_from_js(o.Get("hint"));
  sdn::ControlNetShape shape{get_int(o, "batch", 1), 4, get_int(o, "height", 0), get_int(o, "width", 0), get_int(o, "tokens", 0)};
  sdn::UnetParams params;
  params.heads = get_int(o, "heads", 0);
  params.head_dim = get_int(o, "headDim", 0);
  std::shared_ptr<sdn::ControlNet> engine = engine_;
  using Out = std::vector<std::vector<float>>;
  return Job<Out>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 1 ? info[1] : env.Undefined(),
      [=](sdn::JobControl& job) {
        sdn::ControlNetRunner runner(*engine, nullptr, hint, shape, params, job);
        return runner.run(x, timesteps, context, y, job);
      },
      [](Napi::Env env, Out& out) -> Napi::Value {
        Napi::Array list = Napi::Array::New(env, out.size());
        for (size_t i = 0; i < out.size(); ++i) {
          Napi::Float32Array a = Napi::Float32Array::New(env, out[i].size());
          std::copy(out[i].begin(), out[i].end(), a.Data());
          list.Set(static_cast<uint32_t>(i), a);
        }
        return list;
      });
}

// Drops this object's hold on the engine; a running job keeps its own until it settles.
Napi::Value NativeControlNet::Dispose(const Napi::CallbackInfo& info) {
  engine_.reset();
  return info.Env().Undefined();
}

}  // namespace sdnode
