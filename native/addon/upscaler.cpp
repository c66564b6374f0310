#include "upscaler.h"

#include "convert.h"

namespace sdnode {

void NativeUpscaler::Init(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function ctor = DefineClass(env, "NativeUpscaler",
                                    {
                                        StaticMethod<&NativeUpscaler::Load>("load"),
                                        InstanceMethod<&NativeUpscaler::Info>("info"),
                                        InstanceMethod<&NativeUpscaler::Upscale>("upscale"),
                                        InstanceMethod<&NativeUpscaler::Dispose>("dispose"),
                                    });
  data.upscaler_ctor = Napi::Persistent(ctor);
  exports.Set("NativeUpscaler", ctor);
}

NativeUpscaler::NativeUpscaler(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeUpscaler>(info) {
  // Only Load() makes usable instances: it passes the engine as an External.
  if (info.Length() == 1 && info[0].IsExternal()) {
    engine_ = *info[0].As<Napi::External<std::shared_ptr<sdn::EsrganUpscaler>>>().Data();
  }
}

Napi::Value NativeUpscaler::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  sdn::UpscalerOptions options;
  options.path = get_string(o, "path", true);
  options.device = get_string(o, "device", true);
  options.threads = get_int(o, "threads", 1);
  options.f16_weights = get_bool(o, "f16Weights", false);
  using Ptr = std::shared_ptr<sdn::EsrganUpscaler>;
  return Job<Ptr>::Start(
      env, Napi::Object(), info.Length() > 1 ? info[1] : env.Undefined(),
      [options](sdn::JobControl& job) {
        job.throw_if_cancelled();
        auto engine = std::make_shared<sdn::EsrganUpscaler>(options, &job);
        job.throw_if_cancelled();
        return engine;
      },
      [](Napi::Env env, Ptr& engine) -> Napi::Value {
        Napi::External<Ptr> external = Napi::External<Ptr>::New(env, &engine);
        return addon_data(env).upscaler_ctor.New({external});
      });
}

std::shared_ptr<sdn::EsrganUpscaler> NativeUpscaler::Shared(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).upscaler_ctor.Value()))
    throw Napi::TypeError::New(env, "expected a NativeUpscaler");
  NativeUpscaler* self = Unwrap(value.As<Napi::Object>());
  self->engine(env);  // throws if disposed
  return self->engine_;
}

sdn::EsrganUpscaler& NativeUpscaler::engine(Napi::Env env) {
  if (!engine_) {
    Napi::Error e = Napi::Error::New(env, "the upscaler has been disposed");
    e.Set("code", Napi::String::New(env, "ERR_DISPOSED"));
    throw e;
  }
  return *engine_;
}

Napi::Value NativeUpscaler::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const sdn::UpscalerInfo& i = engine(env).info();
  Napi::Object out = Napi::Object::New(env);
  out.Set("scale", i.scale);
  out.Set("features", i.features);
  out.Set("growth", i.growth);
  out.Set("blocks", i.blocks);
  out.Set("unshuffle", i.unshuffle);
  out.Set("reach", i.reach);
  out.Set("convention", i.convention);
  out.Set("format", i.format);
  out.Set("device", i.device);
  out.Set("weightBytes", static_cast<double>(i.weight_bytes));
  return out;
}

Napi::Value NativeUpscaler::Upscale(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  sdn::Image image = image_from_js(info[0]);
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "upscale params must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  sdn::UpscaleParams params;
  params.tile = get_int(o, "tile", 0);
  params.overlap = get_int(o, "overlap", 0);
  params.repeats = get_int(o, "repeats", 1);
  std::shared_ptr<sdn::EsrganUpscaler> engine = engine_;  // the job holds the engine too
  return Job<sdn::Image>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 2 ? info[2] : env.Undefined(),
      [engine, image = std::move(image), params](sdn::JobControl& job) { return engine->upscale(image, params, job); },
      [](Napi::Env env, sdn::Image& image) -> Napi::Value { return image_to_js(env, image); });
}

// Drops this object's hold on the engine; a running job keeps its own until it settles.
Napi::Value NativeUpscaler::Dispose(const Napi::CallbackInfo& info) {
  engine_.reset();
  return info.Env().Undefined();
}

}  // namespace sdnode
