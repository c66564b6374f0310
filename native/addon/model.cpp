#include "model.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "autoencoder.h"
#include "convert.h"
#include "lora.h"
#include "controlnet.h"
#include "metadata_json.h"
#include "upscaler.h"
#include "pipeline/architecture.h"
#include "pipeline/generate.h"
#include "sample/rng.h"

namespace sdnode {

void NativeModel::Init(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function ctor = DefineClass(env, "NativeModel",
                                    {
                                        StaticMethod<&NativeModel::Load>("load"),
                                        InstanceMethod<&NativeModel::Info>("info"),
                                        InstanceMethod<&NativeModel::Metadata>("metadata"),
                                        InstanceMethod<&NativeModel::Architecture>("architecture"),
                                        InstanceMethod<&NativeModel::Weights>("weights"),
                                        InstanceMethod<&NativeModel::Checksums>("checksums"),
                                        InstanceMethod<&NativeModel::EncodeTokens>("encodeTokens"),
                                        InstanceMethod<&NativeModel::RunUnet>("runUnet"),
                                        InstanceMethod<&NativeModel::DecodeLatent>("decodeLatent"),
                                        InstanceMethod<&NativeModel::EncodeImageMoments>("encodeImageMoments"),
                                        InstanceMethod<&NativeModel::EncodeImage>("encodeImage"),
                                        InstanceMethod<&NativeModel::VaeComputeBytes>("vaeComputeBytes"),
                                        InstanceMethod<&NativeModel::Generate>("generate"),
                                        InstanceMethod<&NativeModel::LoadLora>("loadLora"),
                                        InstanceMethod<&NativeModel::LoadControlNet>("loadControlNet"),
                                        InstanceMethod<&NativeModel::PatchedWeights>("patchedWeights"),
                                        InstanceMethod<&NativeModel::SetVaeConvInputScale>("setVaeConvInputScale"),
                                        InstanceMethod<&NativeModel::Dispose>("dispose"),
                                    });
  data.model_ctor = Napi::Persistent(ctor);
  exports.Set("NativeModel", ctor);
}

NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  // Only Load() makes usable instances: it passes the engine as an External.
  if (info.Length() == 1 && info[0].IsExternal()) {
    engine_ = *info[0].As<Napi::External<std::shared_ptr<sdn::Model>>>().Data();
  }
}

Napi::Value NativeModel::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  sdn::ModelOptions options;
  options.sources.model = get_string(o, "model", false);
  options.sources.unet = get_string(o, "unet", false);
  options.sources.vae = get_string(o, "vae", false);
  options.sources.text_encoder = get_string(o, "textEncoder", false);
  options.sources.text_encoder2 = get_string(o, "textEncoder2", false);
  options.sources.ema = get_bool(o, "ema", false);
  options.device = get_string(o, "device", true);
  options.threads = get_int(o, "threads", 1);
  options.weight_type = get_string(o, "weightType", false);
  using Ptr = std::shared_ptr<sdn::Model>;
  struct Loaded {
    Ptr engine;
    MetadataForJs metadata;
    sdn::ArchitectureFacts architecture;
  };
  return Job<Loaded>::Start(
      env, Napi::Object(), info.Length() > 1 ? info[1] : env.Undefined(),
      [options](sdn::JobControl& job) {
        Loaded loaded{std::make_shared<sdn::Model>(options, job), {}};
        loaded.metadata = metadata_for_js(loaded.engine->take_metadata());
        loaded.architecture = sdn::describe_architecture(loaded.engine->weight_lookup());
        return loaded;
      },
      [](Napi::Env env, Loaded& loaded) -> Napi::Value {
        Napi::External<Ptr> external = Napi::External<Ptr>::New(env, &loaded.engine);
        Napi::Object model = addon_data(env).model_ctor.New({external});
        NativeModel::Unwrap(model)->metadata_ = std::move(loaded.metadata);
        NativeModel::Unwrap(model)->architecture_ = std::move(loaded.architecture);
        return model;
      });
}

sdn::Model& NativeModel::engine(Napi::Env env) {
  if (!engine_) {
    Napi::Error e = Napi::Error::New(env, "the model has been disposed");
    e.Set("code", Napi::String::New(env, "ERR_DISPOSED"));
    throw e;
  }
  return *engine_;
}

Napi::Value NativeModel::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const sdn::Model& model = engine(env);
  const sdn::ModelInfo& i = model.info();
  Napi::Object out = Napi::Object::New(env);
  out.Set("device", i.device);
  out.Set("weightType", i.weight_type);
  Napi::Array sources = Napi::Array::New(env, i.sources.size());
  for (size_t k = 0; k < i.sources.size(); ++k) {
    const sdn::SourceRecord& s = i.sources[k];
    Napi::Object so = Napi::Object::New(env);
    so.Set("component", s.component);
    so.Set("path", s.path);
    so.Set("format", s.format);
    so.Set("convention", s.convention);
    so.Set("tensors", static_cast<double>(s.tensors));
    so.Set("dropped", strings_to_js(env, s.dropped));
    sources.Set(k, so);
  }
  out.Set("sources", sources);
  out.Set("tokenizerDir", i.tokenizer_dir);
  out.Set("deviceBytes", static_cast<double>(i.device_bytes));
  out.Set("mappedBytes", static_cast<double>(i.mapped_bytes));
  out.Set("loadMs", i.load_ms);
  return out;
}

Napi::Value NativeModel::Metadata(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  Napi::Object out = Napi::Object::New(env);
  out.Set("chunks", strings_to_js(env, metadata_.chunks));
  out.Set("omitted", static_cast<double>(metadata_.omitted));
  return out;
}

Napi::Value NativeModel::Architecture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  const sdn::ArchitectureFacts& a = architecture_;
  const auto n = [&](int64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  Napi::Object out = Napi::Object::New(env);
  if (a.unet.present) {
    Napi::Object u = Napi::Object::New(env);
    u.Set("inChannels", n(a.unet.in_channels));
    u.Set("outChannels", n(a.unet.out_channels));
    u.Set("modelChannels", n(a.unet.model_channels));
    u.Set("contextDim", n(a.unet.context_dim));
    u.Set("admChannels", n(a.unet.adm_channels));
    u.Set("latentMultiple", n(a.unet.latent_multiple));
    out.Set("unet", u);
  } else if (!a.unet.missing.empty()) {
    out.Set("unetError", a.unet.missing);
  }
  Napi::Object vae = Napi::Object::New(env);
  vae.Set("decoder", a.vae.decoder);
  vae.Set("encoder", a.vae.encoder);
  vae.Set("latentChannels", n(a.vae.latent_channels));
  vae.Set("decoderScale", n(a.vae.decoder_scale));
  vae.Set("encoderScale", n(a.vae.encoder_scale));
  out.Set("vae", vae);
  Napi::Array texts = Napi::Array::New(env, a.text_encoders.size());
  for (size_t k = 0; k < a.text_encoders.size(); ++k) {
    const sdn::TextEncoderFacts& t = a.text_encoders[k];
    Napi::Object o = Napi::Object::New(env);
    o.Set("prefix", t.prefix);
    o.Set("width", n(t.width));
    o.Set("layers", n(t.layers));
    o.Set("vocab", n(t.vocab));
    o.Set("positions", n(t.positions));
    o.Set("projection", n(t.projection));
    texts.Set(k, o);
  }
  out.Set("textEncoders", texts);
  return out;
}

Napi::Value NativeModel::Weights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& records = engine(env).weights().records();
  Napi::Array out = Napi::Array::New(env, records.size());
  for (size_t k = 0; k < records.size(); ++k) {
    const sdn::WeightRecord& r = records[k];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", r.name);
    o.Set("shape", shape_to_js(env, r.shape));
    o.Set("from", r.from);
    o.Set("to", r.to);
    o.Set("bytes", static_cast<double>(r.bytes));
    o.Set("mapped", r.mapped);
    out.Set(k, o);
  }
  return out;
}

Napi::Value NativeModel::Checksums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "checksums(names): an array of names expected");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::string> names;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value v = arr.Get(k);
    if (!v.IsString()) throw Napi::TypeError::New(env, "checksums(names): names must be strings");
    names.push_back(v.As<Napi::String>().Utf8Value());
  }
  std::shared_ptr<sdn::Model> engine = engine_;  // the job holds the model too
  return Job<std::vector<std::string>>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 1 ? info[1] : env.Undefined(),
      [engine, names](sdn::JobControl& job) {
        std::lock_guard<std::mutex> lock(engine->compute_mutex());
        std::vector<std::string> out;
        for (size_t k = 0; k < names.size(); ++k) {
          job.throw_if_cancelled();
          out.push_back(checksum_hex(engine->weights().checksum(names[k])));
          job.report(static_cast<int>(k + 1), static_cast<int>(names.size()));
        }
        return out;
      },
      [](Napi::Env env, std::vector<std::string>& v) -> Napi::Value { return strings_to_js(env, v); });
}

namespace {

std::vector<float> float_array(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Float32Array to_float32_array(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

// { prefix?, heads, quickGelu, clipSkip, finalNorm?, pooled?, embeddings? } (lib/native.ts NativeTextEncoderParams)
sdn::TextEncoderParams text_encoder_params(const Napi::Object& o) {
  sdn::TextEncoderParams params;
  const std::string prefix = get_string(o, "prefix", false);
  if (!prefix.empty()) params.prefix = prefix;
  params.heads = get_int(o, "heads", 0);
  params.quick_gelu = get_bool(o, "quickGelu", true);
  params.clip_skip = get_int(o, "clipSkip", 1);
  params.final_norm = get_bool(o, "finalNorm", true);
  params.pooled = get_bool(o, "pooled", false);
  if (!o.Get("embeddings").IsUndefined()) params.embeddings = float_array(o.Get("embeddings"), "embeddings");
  return params;
}


}  // namespace

Napi::Value NativeModel::EncodeTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  if (info.Length() < 3 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      !info[1].IsNumber() || !info[2].IsObject())
    throw Napi::TypeError::New(env, "encodeTokens(ids: Int32Array, windows: number, params: object)");
  Napi::Int32Array a = info[0].As<Napi::Int32Array>();
  std::vector<int32_t> ids(a.Data(), a.Data() + a.ElementLength());
  const int windows = info[1].As<Napi::Number>().Int32Value();
  const sdn::TextEncoderParams params = text_encoder_params(info[2].As<Napi::Object>());
  std::shared_ptr<sdn::Model> engine = engine_;
  return Job<sdn::TextEncoding>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 3 ? info[3] : env.Undefined(),
      [engine, ids = std::move(ids), windows, params](sdn::JobControl& job) {
        std::lock_guard<std::mutex> lock(engine->compute_mutex());
        return engine->encode_tokens(ids, windows, params, job);
      },
      [](Napi::Env env, sdn::TextEncoding& e) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("hidden", to_float32_array(env, e.hidden));
        if (!e.pooled.empty()) out.Set("pooled", to_float32_array(env, e.pooled));
        return out;
      });
}

Napi::Value NativeModel::RunUnet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "runUnet(params: object)");
  Napi::Object o = info[0].As<Napi::Object>();
  std::vector<float> x = float_array(o.Get("x"), "x");
  std::vector<float> timesteps = float_array(o.Get("timesteps"), "timesteps");
  std::vector<float> context = float_array(o.Get("context"), "context");
  std::vector<float> y = o.Get("y").IsUndefined() ? std::vector<float>{} : float_array(o.Get("y"), "y");
  const int batch = get_int(o, "batch", 1), channels = get_int(o, "channels", 0), height = get_int(o, "height", 0),
            width = get_int(o, "width", 0), context_tokens = get_int(o, "contextTokens", 0);
  sdn::UnetParams params;
  params.heads = get_int(o, "heads", 0);
  params.head_dim = get_int(o, "headDim", 0);
  std::shared_ptr<sdn::Model> engine = engine_;
  return Job<std::vector<float>>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 1 ? info[1] : env.Undefined(),
      [=, x = std::move(x), timesteps = std::move(timesteps), context = std::move(context), y = std::move(y)](sdn::JobControl& job) {
        std::lock_guard<std::mutex> lock(engine->compute_mutex());
        return engine->run_unet(x, batch, channels, height, width, timesteps, context, context_tokens, y, params, job);
      },
      [](Napi::Env env, std::vector<float>& v) -> Napi::Value { return to_float32_array(env, v); });
}

Napi::Value NativeModel::DecodeLatent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  sdn::Latent latent = latent_from_js(info[0]);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "decodeLatent(latent, scaleFactor, tiling?)");
  const float scale = info[1].As<Napi::Number>().FloatValue();
  const sdn::VaeTiling tiling = tiling_from_js(info[2], "tiling");
  std::shared_ptr<sdn::Model> engine = engine_;
  return Job<sdn::Image>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 3 ? info[3] : env.Undefined(),
      [engine, latent = std::move(latent), scale, tiling](sdn::JobControl& job) {
        std::lock_guard<std::mutex> lock(engine->compute_mutex());
        return engine->decode_latent(latent, scale, tiling, job);
      },
      [](Napi::Env env, sdn::Image& image) -> Napi::Value { return image_to_js(env, image); });
}

Napi::Value NativeModel::EncodeImageMoments(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  sdn::Image image = image_from_js(info[0]);
  const sdn::VaeTiling tiling = tiling_from_js(info[1], "tiling");
  std::shared_ptr<sdn::Model> engine = engine_;
  return Job<sdn::Latent>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 2 ? info[2] : env.Undefined(),
      [engine, image = std::move(image), tiling](sdn::JobControl& job) {
        std::lock_guard<std::mutex> lock(engine->compute_mutex());
        return engine->encode_image_moments(image, tiling, job);
      },
      [](Napi::Env env, sdn::Latent& latent) -> Napi::Value { return latent_to_js(env, latent); });
}

Napi::Value NativeModel::EncodeImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  sdn::Image image = image_from_js(info[0]);
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "encodeImage(image, { scale, seed?, rng, tiling? })");
  Napi::Object o = info[1].As<Napi::Object>();
  Napi::Value scale_value = o.Get("scale"), seed_value = o.Get("seed");
  if (!scale_value.IsNumber()) throw Napi::TypeError::New(env, "scale must be a number");
  const float scale = scale_value.As<Napi::Number>().FloatValue();
  std::optional<uint64_t> seed;
  if (!seed_value.IsUndefined()) {
    if (!seed_value.IsBigInt()) throw Napi::TypeError::New(env, "seed must be a bigint or undefined");
    bool lossless = false;
    seed = seed_value.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(env, "seed must fit in 64 bits");
  }
  const std::string rng = get_string(o, "rng", true);
  const sdn::VaeTiling tiling = tiling_from_js(o.Get("tiling"), "tiling");
  std::shared_ptr<sdn::Model> engine = engine_;
  return Job<sdn::Latent>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 2 ? info[2] : env.Undefined(),
      [engine, image = std::move(image), scale, seed, rng, tiling](sdn::JobControl& job) {
        const sdn::RngKind kind = sdn::parse_rng_kind(rng);
        std::lock_guard<std::mutex> lock(engine->compute_mutex());
        const sdn::Latent moments = engine->encode_image_moments(image, tiling, job);
        std::unique_ptr<sdn::Rng> noise = seed ? sdn::make_rng(kind, *seed) : nullptr;
        return sdn::latent_from_moments(moments, noise.get(), scale);
      },
      [](Napi::Env env, sdn::Latent& latent) -> Napi::Value { return latent_to_js(env, latent); });
}

Napi::Value NativeModel::VaeComputeBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sdn::Model& model = engine(env);
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "vaeComputeBytes(width: number, height: number)");
  const int width = info[0].As<Napi::Number>().Int32Value(), height = info[1].As<Napi::Number>().Int32Value();
  Napi::Object out = Napi::Object::New(env);
  for (const bool decode : {true, false}) {
    Napi::Value bytes = env.Null();
    try {
      bytes = Napi::Number::New(env, model.vae_compute_bytes(decode, width, height));
    } catch (const sdn::Error& e) {
      if (e.code() != sdn::ErrorCode::ModelCompatibility) throw make_error(env, describe_current_exception());
    } catch (...) {
      throw make_error(env, describe_current_exception());
    }
    out.Set(decode ? "decode" : "encode", bytes);
  }
  return out;
}

namespace {

sdn::PromptTokens prompt_tokens(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be { ids, weights, windows }");
  Napi::Object p = v.As<Napi::Object>();
  Napi::Value ids = p.Get("ids");
  if (!ids.IsTypedArray() || ids.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(o.Env(), std::string(key) + ".ids must be an Int32Array");
  Napi::Int32Array a = ids.As<Napi::Int32Array>();
  sdn::PromptTokens t;
  t.ids.assign(a.Data(), a.Data() + a.ElementLength());
  t.weights = float_array(p.Get("weights"), "weights");
  t.windows = get_int(p, "windows", 0);
  Napi::Value ids2 = p.Get("ids2");
  if (!ids2.IsUndefined()) {
    if (!ids2.IsTypedArray() || ids2.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw Napi::TypeError::New(o.Env(), std::string(key) + ".ids2 must be an Int32Array");
    Napi::Int32Array b = ids2.As<Napi::Int32Array>();
    t.ids2.assign(b.Data(), b.Data() + b.ElementLength());
  }
  return t;
}

}  // namespace

// [{ lora: NativeLora, weight }] (lib/ checked the weights' range), or undefined.
static std::vector<sdn::LoraUse> lora_uses(const Napi::Value& loras) {
  Napi::Env env = loras.Env();
  std::vector<sdn::LoraUse> uses;
  if (loras.IsUndefined()) return uses;
  if (!loras.IsArray()) throw Napi::TypeError::New(env, "loras must be an array");
  Napi::Array list = loras.As<Napi::Array>();
  for (uint32_t k = 0; k < list.Length(); ++k) {
    Napi::Value entry = list.Get(k);
    if (!entry.IsObject()) throw Napi::TypeError::New(env, "loras must be an array of { lora, weight }");
    Napi::Value weight = entry.As<Napi::Object>().Get("weight");
    if (!weight.IsNumber() || !std::isfinite(weight.As<Napi::Number>().DoubleValue()))
      throw Napi::TypeError::New(env, "a LoRA's weight must be a finite number");
    uses.push_back({NativeLora::Shared(entry.As<Napi::Object>().Get("lora")), weight.As<Napi::Number>().FloatValue()});
  }
  return uses;
}

// { width, height, scheduleSteps, runSteps, pixelSpace, filter, antialias, upscaler?, tile, overlap }
// (lib/hires.ts resolved them; the engine checks what it relies on).
static sdn::HiresParams hires_from_js(const Napi::Value& v) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) throw Napi::TypeError::New(env, "hires must be an object");
  Napi::Object o = v.As<Napi::Object>();
  sdn::HiresParams h;
  h.width = get_int(o, "width", 0);
  h.height = get_int(o, "height", 0);
  h.schedule_steps = get_int(o, "scheduleSteps", 0);
  h.run_steps = get_int(o, "runSteps", 0);
  h.pixel_space = get_bool(o, "pixelSpace", false);
  try {
    h.filter = sdn::parse_resize_filter(get_string(o, "filter", true));
  } catch (const sdn::Error& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  h.antialias = get_bool(o, "antialias", false);
  if (!o.Get("upscaler").IsUndefined()) h.upscaler = NativeUpscaler::Shared(o.Get("upscaler"));
  h.upscaler_tile = get_int(o, "tile", 128);
  h.upscaler_overlap = get_int(o, "overlap", 32);
  if (h.width <= 0 || h.height <= 0) throw Napi::RangeError::New(env, "hires.width and hires.height must be positive");
  return h;
}

Napi::Value NativeModel::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "generate(params: object)");
  Napi::Object o = info[0].As<Napi::Object>();
  sdn::GenerateParams p;
  p.conditioning.prompt = prompt_tokens(o, "prompt");
  p.conditioning.negative = prompt_tokens(o, "negative");
  p.conditioning.empty = prompt_tokens(o, "empty");
  Napi::Value encoders = o.Get("textEncoders");
  if (!encoders.IsArray() || encoders.As<Napi::Array>().Length() < 1 || encoders.As<Napi::Array>().Length() > 2)
    throw Napi::TypeError::New(env, "textEncoders must be an array of one or two objects");
  p.conditioning.text_encoders.clear();
  for (uint32_t k = 0; k < encoders.As<Napi::Array>().Length(); ++k) {
    Napi::Value e = encoders.As<Napi::Array>().Get(k);
    if (!e.IsObject()) throw Napi::TypeError::New(env, "textEncoders must be an array of one or two objects");
    p.conditioning.text_encoders.push_back(text_encoder_params(e.As<Napi::Object>()));
  }
  p.conditioning.zero_negative = get_bool(o, "zeroNegative", false);
  Napi::Value size = o.Get("size");
  if (!size.IsUndefined()) {
    if (!size.IsObject()) throw Napi::TypeError::New(env, "size must be an object");
    Napi::Object s = size.As<Napi::Object>();
    p.conditioning.size.original_width = get_int(s, "originalWidth", 0);
    p.conditioning.size.original_height = get_int(s, "originalHeight", 0);
    p.conditioning.size.crop_left = get_int(s, "cropLeft", 0);
    p.conditioning.size.crop_top = get_int(s, "cropTop", 0);
    p.conditioning.size.target_width = get_int(s, "targetWidth", 0);
    p.conditioning.size.target_height = get_int(s, "targetHeight", 0);
    p.conditioning.size.aesthetic_score = get_number(s, "aestheticScore", 6.0);
    p.conditioning.size.negative_aesthetic_score = get_number(s, "negativeAestheticScore", 2.5);
  }
  p.unet.heads = get_int(o, "unetHeads", 0);
  p.unet.head_dim = get_int(o, "unetHeadDim", 0);
  p.prediction = get_string(o, "prediction", true) == "v" ? sdn::Prediction::V : sdn::Prediction::Epsilon;
  p.width = get_int(o, "width", 0);
  p.height = get_int(o, "height", 0);
  p.steps = get_int(o, "steps", 0);
  p.sampler = get_string(o, "sampler", true);
  p.scheduler = get_string(o, "scheduler", true);
  Napi::Value cfg = o.Get("cfgScale"), scale = o.Get("vaeScale"), seed = o.Get("seed");
  if (!cfg.IsNumber() || !scale.IsNumber() || !seed.IsBigInt()) throw Napi::TypeError::New(env, "cfgScale, vaeScale: numbers; seed: bigint");
  p.cfg_scale = cfg.As<Napi::Number>().FloatValue();
  p.vae_scale = scale.As<Napi::Number>().FloatValue();
  bool lossless = false;
  p.seed = seed.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(env, "seed must fit in 64 bits");
  p.rng = get_string(o, "rng", true);
  p.batch_count = get_int(o, "batchCount", 1);
  p.decode = get_bool(o, "decode", true);
  p.vae_tiling = tiling_from_js(o.Get("vaeTiling"), "vaeTiling");
  p.tae_tiling = tiling_from_js(o.Get("taeTiling"), "taeTiling");
  // Image-to-image and inpainting (lib/ checked sizes and ranges; the engine checks again).
  if (!o.Get("initImage").IsUndefined()) p.init_image = image_from_js(o.Get("initImage"));
  if (!o.Get("mask").IsUndefined()) p.mask = image_from_js(o.Get("mask"));
  Napi::Value strength = o.Get("strength");
  if (!strength.IsUndefined()) {
    if (!strength.IsNumber()) throw Napi::TypeError::New(env, "strength must be a number");
    p.strength = strength.As<Napi::Number>().FloatValue();
  }
  p.mask_blur = get_int(o, "maskBlur", 4);
  // Live previews: 'none' | 'latent2rgb' | 'tae' (the engine checks), every previewInterval steps.
  p.preview.method = get_string(o, "preview", false);
  p.preview.interval = get_int(o, "previewInterval", 1);
  p.preview.latent_format = get_string(o, "latentFormat", false);
  p.preview.tae = NativeAutoencoder::Shared(o.Get("tae"));
  p.tae_decoder = NativeAutoencoder::Shared(o.Get("taeDecoder"));
  p.loras = lora_uses(o.Get("loras"));
  p.control_nets = NativeControlNet::Uses(o.Get("controlNets"));
  if (!o.Get("hires").IsUndefined()) p.hires = hires_from_js(o.Get("hires"));
  // Image-to-image from given latents (the hires fix's second pass, composed by hand in tests).
  Napi::Value init_latents = o.Get("initLatents");
  if (!init_latents.IsUndefined()) {
    if (!init_latents.IsArray()) throw Napi::TypeError::New(env, "initLatents must be an array of latents");
    for (uint32_t k = 0; k < init_latents.As<Napi::Array>().Length(); ++k)
      p.init_latents.push_back(latent_from_js(init_latents.As<Napi::Array>().Get(k)));
    p.init_latent_steps = get_int(o, "initLatentSteps", 0);
  }
  std::shared_ptr<sdn::Model> engine = engine_;
  return Job<sdn::GenerateResult>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 1 ? info[1] : env.Undefined(),
      [engine, p](sdn::JobControl& job) { return sdn::generate(*engine, p, job); },
      [](Napi::Env env, sdn::GenerateResult& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Array images = Napi::Array::New(env, r.images.size());
        for (size_t i = 0; i < r.images.size(); ++i) images.Set(i, image_to_js(env, r.images[i]));
        out.Set("images", images);
        Napi::Array latents = Napi::Array::New(env, r.latents.size());
        for (size_t i = 0; i < r.latents.size(); ++i) latents.Set(i, latent_to_js(env, r.latents[i]));
        out.Set("latents", latents);
        out.Set("stepsRun", r.steps_run);
        out.Set("textEncodeMs", r.text_encode_ms);
        out.Set("imageEncodeMs", r.image_encode_ms);
        out.Set("samplingMs", r.sampling_ms);
        out.Set("decodeMs", r.decode_ms);
        out.Set("loraMs", r.lora_ms);
        out.Set("loraReused", r.lora_reused);
        out.Set("loraBytes", static_cast<double>(r.lora_bytes));
        out.Set("hiresStepsRun", r.hires_steps_run);
        out.Set("hiresUpscaleMs", r.hires_upscale_ms);
        out.Set("hiresSamplingMs", r.hires_sampling_ms);
        out.Set("controlNetMs", r.control_net_ms);
        return out;
      });
}

Napi::Value NativeModel::PatchedWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "patchedWeights(loras, names: string[])");
  std::vector<sdn::LoraUse> uses = lora_uses(info[0]);
  std::vector<std::string> names;
  Napi::Array list = info[1].As<Napi::Array>();
  for (uint32_t k = 0; k < list.Length(); ++k) {
    if (!list.Get(k).IsString()) throw Napi::TypeError::New(env, "names must be strings");
    names.push_back(list.Get(k).As<Napi::String>().Utf8Value());
  }
  std::shared_ptr<sdn::Model> engine = engine_;
  using Values = std::vector<std::vector<float>>;
  return Job<Values>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 2 ? info[2] : env.Undefined(),
      [engine, uses, names](sdn::JobControl& job) {
        std::lock_guard<std::mutex> lock(engine->compute_mutex());
        Values out;
        for (const std::string& n : names) out.push_back(engine->patched_weight(uses, n, job));
        return out;
      },
      [](Napi::Env env, Values& values) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, values.size());
        for (size_t k = 0; k < values.size(); ++k) {
          Napi::Float32Array a = Napi::Float32Array::New(env, values[k].size());
          std::copy(values[k].begin(), values[k].end(), a.Data());
          out.Set(k, a);
        }
        return out;
      });
}

Napi::Value NativeModel::LoadLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine(env);
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "loadLora(path: string)");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  std::shared_ptr<sdn::Model> engine = engine_;  // the job holds the model too
  using Ptr = std::shared_ptr<const sdn::Lora>;
  return Job<Ptr>::Start(
      env, info.This().As<Napi::Object>(), info.Length() > 1 ? info[1] : env.Undefined(),
      [engine, path](sdn::JobControl& job) -> Ptr { return std::make_shared<const sdn::Lora>(path, engine->weights(), job); },
      [](Napi::Env env, Ptr& lora) -> Napi::Value { return NativeLora::Wrap(env, lora); });
}

Napi::Value NativeModel::LoadControlNet(const Napi::CallbackInfo& info) {
  engine(info.Env());
  return NativeControlNet::Load(info, engine_);
}

Napi::Value NativeModel::SetVaeConvInputScale(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sdn::Model& model = engine(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setVaeConvInputScale(scale: number)");
  const float scale = info[0].As<Napi::Number>().FloatValue();
  if (!(scale > 0.0f) || !std::isfinite(scale)) throw Napi::RangeError::New(env, "the scale must be a positive finite number");
  model.set_vae_conv_input_scale(scale);
  return env.Undefined();
}

// Drops this object's hold on the model; a running job keeps its own until it settles.
Napi::Value NativeModel::Dispose(const Napi::CallbackInfo& info) {
  engine_.reset();
  return info.Env().Undefined();
}

}  // namespace sdnode
