#include "lora.h"

#include "convert.h"

namespace sdnode {

namespace {

const char* kind_name(sdn::LoraKind k) {
  switch (k) {
    case sdn::LoraKind::LowRank: return "lora";
    case sdn::LoraKind::LoHa: return "loha";
    case sdn::LoraKind::LoKr: return "lokr";
    case sdn::LoraKind::Diff: return "diff";
  }
  return "?";
}

}  // namespace

void NativeLora::Init(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function ctor = DefineClass(env, "NativeLora",
                                    {
                                        InstanceMethod<&NativeLora::Report>("report"),
                                        InstanceMethod<&NativeLora::Dispose>("dispose"),
                                    });
  data.lora_ctor = Napi::Persistent(ctor);
  exports.Set("NativeLora", ctor);
}

NativeLora::NativeLora(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeLora>(info) {
  // Only Wrap() makes usable instances: it passes the engine as an External.
  if (info.Length() == 1 && info[0].IsExternal()) {
    engine_ = *info[0].As<Napi::External<std::shared_ptr<const sdn::Lora>>>().Data();
  }
}

Napi::Object NativeLora::Wrap(Napi::Env env, std::shared_ptr<const sdn::Lora> lora) {
  Napi::External<std::shared_ptr<const sdn::Lora>> external = Napi::External<std::shared_ptr<const sdn::Lora>>::New(env, &lora);
  return addon_data(env).lora_ctor.New({external});
}

std::shared_ptr<const sdn::Lora> NativeLora::Shared(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).lora_ctor.Value()))
    throw Napi::TypeError::New(env, "expected a NativeLora");
  NativeLora* self = Unwrap(value.As<Napi::Object>());
  self->engine(env);  // throws if disposed
  return self->engine_;
}

const sdn::Lora& NativeLora::engine(Napi::Env env) {
  if (!engine_) {
    Napi::Error e = Napi::Error::New(env, "the LoRA has been disposed");
    e.Set("code", Napi::String::New(env, "ERR_DISPOSED"));
    throw e;
  }
  return *engine_;
}

Napi::Value NativeLora::Report(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const sdn::Lora& lora = engine(env);
  const sdn::LoraReport& r = lora.report();
  Napi::Object out = Napi::Object::New(env);
  out.Set("path", lora.path());
  out.Set("fileBytes", static_cast<double>(lora.file_bytes()));
  out.Set("tensors", static_cast<double>(r.tensors));
  out.Set("appliedTensors", static_cast<double>(r.applied_tensors));
  Napi::Array targets = Napi::Array::New(env, lora.targets().size());
  for (size_t i = 0; i < lora.targets().size(); ++i) {
    const sdn::LoraTarget& t = lora.targets()[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("weight", t.weight);
    o.Set("kind", kind_name(t.kind));
    o.Set("rank", t.rank);
    o.Set("scale", t.scale);
    o.Set("dora", t.dora != nullptr);
    targets.Set(i, o);
  }
  out.Set("targets", targets);
  out.Set("unmatched", strings_to_js(env, r.unmatched));
  out.Set("incompatible", strings_to_js(env, r.incompatible));
  return out;
}

// Drops this object's hold on the LoRA; a running job keeps its own until it settles.
Napi::Value NativeLora::Dispose(const Napi::CallbackInfo& info) {
  engine_.reset();
  return info.Env().Undefined();
}

}  // namespace sdnode
