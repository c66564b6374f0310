#include "autoencoder.h"

#include "convert.h"

namespace sdnode {

void NativeAutoencoder::Init(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function ctor = DefineClass(env, "NativeAutoencoder",
                                    {
                                        StaticMethod<&NativeAutoencoder::Load>("load"),
                                        InstanceMethod<&NativeAutoencoder::Info>("info"),
                                        InstanceMethod<&NativeAutoencoder::Encode>("encode"),
                                        InstanceMethod<&NativeAutoencoder::Decode>("decode"),
                                        InstanceMethod<&NativeAutoencoder::ComputeBytes>("computeBytes"),
                                        InstanceMethod<&NativeAutoencoder::Dispose>("dispose"),
                                    });
  data.autoencoder_ctor = Napi::Persistent(ctor);
  exports.Set("NativeAutoencoder", ctor);
}

NativeAutoencoder::NativeAutoencoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeAutoencoder>(info) {
  // Only Load() makes usable instances: it passes the engine as an External.
  if (info.Length() == 1 && info[0].IsExternal()) {
    auto* holder = info[0].As<Napi::External<std::shared_ptr<sdn::TinyAutoencoder>>>().Data();
    engine_ = *holder;
  }
}

Napi::Value NativeAutoencoder::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  sdn::AutoencoderOptions options;
  options.encoder_path = get_string(o, "encoder", false);
  options.decoder_path = get_string(o, "decoder", false);
  options.device = get_string(o, "device", true);
  options.threads = get_int(o, "threads", 1);
  options.f16_weights = get_bool(o, "f16Weights", false);
  using Ptr = std::shared_ptr<sdn::TinyAutoencoder>;
  return Job<Ptr>::Start(
      env, Napi::Object(), info.Length() > 1 ? info[1] : env.Undefined(),
      [options](sdn::JobControl& job) {
        job.throw_if_cancelled();
        auto engine = std::make_shared<sdn::TinyAutoencoder>(options);
        job.throw_if_cancelled();
        return engine;
      },
      [](Napi::Env env, Ptr& engine) -> Napi::Value {
        Napi::External<Ptr> external = Napi::External<Ptr>::New(env, &engine);
        return addon_data(env).autoencoder_ctor.New({external});
      });
}

std::shared_ptr<sdn::TinyAutoencoder> NativeAutoencoder::Shared(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (value.IsUndefined() || value.IsNull()) return nullptr;
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).autoencoder_ctor.Value()))
    throw Napi::TypeError::New(env, "expected a NativeAutoencoder");
  NativeAutoencoder* self = Unwrap(value.As<Napi::Object>());
  self->engine(env);  // throws if disposed
  return self->engine_;
}

sdn::TinyAutoencoder& NativeAutoencoder::engine(Napi::Env env) {
  if (!engine_) {
    Napi::Error e = Napi::Error::New(env, "the autoencoder has been disposed");
    e.Set("code", Napi::String::New(env, "ERR_DISPOSED"));
    throw e;
  }
  return *engine_;
}

Napi::Value NativeAutoencoder::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const sdn::AutoencoderInfo& i = engine(env).info();
  Napi::Object out = Napi::Object::New(env);
  out.Set("hasEncoder", i.has_encoder);
  out.Set("hasDecoder", i.has_decoder);
  out.Set("latentChannels", i.latent_channels);
  out.Set("scale", i.scale);
  out.Set("device", i.device);
  out.Set("weightBytes", static_cast<double>(i.weight_bytes));
  return out;
}

Napi::Value NativeAutoencoder::Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  sdn::Image image = image_from_js(info[0]);
  const sdn::VaeTiling tiling = tiling_from_js(info[1], "tiling");
  std::shared_ptr<sdn::TinyAutoencoder> engine = engine_;  // the job holds the engine too
  return Job<sdn::Latent>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 2 ? info[2] : env.Undefined(),
      [engine, image = std::move(image), tiling](sdn::JobControl& job) { return engine->encode(image, job, tiling); },
      [](Napi::Env env, sdn::Latent& latent) -> Napi::Value { return latent_to_js(env, latent); });
}

Napi::Value NativeAutoencoder::Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  sdn::Latent latent = latent_from_js(info[0]);
  const sdn::VaeTiling tiling = tiling_from_js(info[1], "tiling");
  std::shared_ptr<sdn::TinyAutoencoder> engine = engine_;
  return Job<sdn::Image>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 2 ? info[2] : env.Undefined(),
      [engine, latent = std::move(latent), tiling](sdn::JobControl& job) { return engine->decode(latent, job, tiling); },
      [](Napi::Env env, sdn::Image& image) -> Napi::Value { return image_to_js(env, image); });
}

// computeBytes(width, height) -> { encode, decode }: planned compute-buffer bytes of one untiled
// pass over a width × height pixel image (0 for a missing half). Plans a graph: milliseconds.
Napi::Value NativeAutoencoder::ComputeBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sdn::TinyAutoencoder& e = engine(env);
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "computeBytes(width, height)");
  const int width = info[0].As<Napi::Number>().Int32Value(), height = info[1].As<Napi::Number>().Int32Value();
  Napi::Object out = Napi::Object::New(env);
  try {
    out.Set("encode", e.compute_bytes(false, width, height));
    out.Set("decode", e.compute_bytes(true, width, height));
  } catch (...) {
    throw make_error(env, describe_current_exception());
  }
  return out;
}

// Drops this object's hold on the engine; a running job keeps its own until it settles.
Napi::Value NativeAutoencoder::Dispose(const Napi::CallbackInfo& info) {
  engine_.reset();
  return info.Env().Undefined();
}

}  // namespace sdnode
