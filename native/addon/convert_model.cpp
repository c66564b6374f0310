// convertModel(src, dst, weightType, version, onProgress) -> JobHandle<{ tensors: [{ name,
// from, to }], dropped: string[] }>: converts off the JS thread, one progress step per tensor.
#include "convert_model.h"

#include <vector>

#include "convert.h"
#include "job.h"
#include "pipeline/convert.h"

namespace sdnode {

namespace {

Napi::Value ConvertModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (size_t i = 0; i < 4; ++i) {
    if (info.Length() <= i || !info[i].IsString())
      throw Napi::TypeError::New(env, "convertModel(src, dst, weightType, version): strings expected");
  }
  std::string src = info[0].As<Napi::String>().Utf8Value();
  std::string dst = info[1].As<Napi::String>().Utf8Value();
  std::string weight_type = info[2].As<Napi::String>().Utf8Value();
  std::string version = info[3].As<Napi::String>().Utf8Value();
  using Result = sdn::ConvertResult;
  return Job<Result>::Start(
      env, Napi::Object(), info.Length() > 4 ? info[4] : env.Undefined(),
      [src, dst, weight_type, version](sdn::JobControl& job) {
        return sdn::convert_model(src, dst, weight_type, version, job);
      },
      [](Napi::Env env, Result& r) -> Napi::Value {
        Napi::Array list = Napi::Array::New(env, r.tensors.size());
        for (size_t i = 0; i < r.tensors.size(); ++i) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", r.tensors[i].name);
          o.Set("from", r.tensors[i].from);
          o.Set("to", r.tensors[i].to);
          list.Set(i, o);
        }
        Napi::Object out = Napi::Object::New(env);
        out.Set("tensors", list);
        out.Set("dropped", strings_to_js(env, r.dropped));
        return out;
      });
}

}  // namespace

void InitConvertModel(Napi::Env env, Napi::Object exports) {
  exports.Set("convertModel", Napi::Function::New(env, ConvertModel, "convertModel"));
}

}  // namespace sdnode
