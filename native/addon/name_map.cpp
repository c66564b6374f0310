// planNames(component, tensors, options?) -> { convention, tensors, dropped }: how a file's
// tensors (names and shapes only) map onto the engine's internal names. Synchronous: it reads
// no data.
#include "name_map.h"

#include <cmath>
#include <string>
#include <vector>

#include "convert.h"
#include "errors.h"
#include "io/name_map.h"

namespace sdnode {

namespace {

sdn::Component parse_component(Napi::Env env, const Napi::Value& v) {
  if (!v.IsString()) throw Napi::TypeError::New(env, "component must be a string");
  const std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "checkpoint") return sdn::Component::Checkpoint;
  if (s == "unet") return sdn::Component::Unet;
  if (s == "vae") return sdn::Component::Vae;
  if (s == "textEncoder") return sdn::Component::TextEncoder;
  if (s == "textEncoder2") return sdn::Component::TextEncoder2;
  throw Napi::TypeError::New(env, "component must be 'checkpoint', 'unet', 'vae', 'textEncoder' or 'textEncoder2'");
}

std::vector<sdn::TensorInfo> parse_tensors(Napi::Env env, const Napi::Value& v) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, "tensors must be an array of { name, shape }");
  Napi::Array list = v.As<Napi::Array>();
  std::vector<sdn::TensorInfo> out;
  out.reserve(list.Length());
  for (uint32_t i = 0; i < list.Length(); ++i) {
    const std::string at = "tensors[" + std::to_string(i) + "]";
    Napi::Value e = list.Get(i);
    if (!e.IsObject()) throw Napi::TypeError::New(env, at + " must be an object { name, shape }");
    Napi::Object o = e.As<Napi::Object>();
    Napi::Value name = o.Get("name");
    if (!name.IsString()) throw Napi::TypeError::New(env, at + ".name must be a string");
    Napi::Value shape = o.Get("shape");
    if (!shape.IsArray()) throw Napi::TypeError::New(env, at + ".shape must be an array of integers");
    Napi::Array dims = shape.As<Napi::Array>();
    if (dims.Length() > 8) throw Napi::TypeError::New(env, at + ".shape has more than 8 dimensions");
    sdn::TensorInfo t;
    t.name = name.As<Napi::String>().Utf8Value();
    for (uint32_t d = 0; d < dims.Length(); ++d) {
      Napi::Value x = dims.Get(d);
      const double n = x.IsNumber() ? x.As<Napi::Number>().DoubleValue() : -1;
      if (!(n >= 0 && n <= 9007199254740991.0 && std::floor(n) == n))
        throw Napi::TypeError::New(env, at + ".shape[" + std::to_string(d) + "] must be a non-negative integer");
      t.shape.push_back(static_cast<int64_t>(n));
    }
    out.push_back(std::move(t));
  }
  return out;
}

Napi::Value PlanNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) throw Napi::TypeError::New(env, "planNames(component, tensors, options?)");
  const sdn::Component component = parse_component(env, info[0]);
  const std::vector<sdn::TensorInfo> tensors = parse_tensors(env, info[1]);
  sdn::NameMapOptions options;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
    Napi::Value ema = info[2].As<Napi::Object>().Get("ema");
    if (!ema.IsUndefined()) {
      if (!ema.IsBoolean()) throw Napi::TypeError::New(env, "options.ema must be a boolean");
      options.ema = ema.As<Napi::Boolean>().Value();
    }
  }

  sdn::NamePlan plan;
  try {
    plan = sdn::plan_names(component, tensors, options);
  } catch (...) {
    throw make_error(env, describe_current_exception());
  }

  Napi::Object out = Napi::Object::New(env);
  out.Set("convention", plan.convention);
  Napi::Array list = Napi::Array::New(env, plan.tensors.size());
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const sdn::TensorMapping& m = plan.tensors[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", m.name);
    o.Set("source", m.source);
    o.Set("op", sdn::tensor_mapping_op_name(m.op));
    o.Set("shape", shape_to_js(env, m.shape));
    if (m.op == sdn::TensorMapping::Op::RowSlice) o.Set("rowBegin", static_cast<double>(m.row_begin));
    list.Set(i, o);
  }
  out.Set("tensors", list);
  out.Set("dropped", strings_to_js(env, plan.dropped));
  return out;
}

}  // namespace

void InitNameMap(Napi::Env env, Napi::Object exports) {
  exports.Set("planNames", Napi::Function::New(env, PlanNames, "planNames"));
}

}  // namespace sdnode
