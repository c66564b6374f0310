// inspectFile(path, onProgress) -> JobHandle<{ format, fileSize, metadata, tensors }>: reads a
// model file's index off the JS thread (headers only; tensor data stays mapped, untouched).
#include "model_file.h"

#include "io/model_file.h"
#include "job.h"

namespace sdnode {

namespace {

Napi::Value InspectFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  return Job<sdn::ModelFile>::Start(
      env, Napi::Object(), info.Length() > 1 ? info[1] : env.Undefined(),
      [path](sdn::JobControl& job) {
        job.throw_if_cancelled();
        return sdn::open_model_file(path);
      },
      [](Napi::Env env, sdn::ModelFile& file) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("format", sdn::file_format_name(file.format));
        out.Set("fileSize", static_cast<double>(file.file_size));
        Napi::Object metadata = Napi::Object::New(env);
        for (const auto& [k, v] : file.store.metadata()) metadata.Set(k, v);
        out.Set("metadata", metadata);
        const auto& tensors = file.store.tensors();
        Napi::Array list = Napi::Array::New(env, tensors.size());
        for (size_t i = 0; i < tensors.size(); ++i) {
          const sdn::TensorInfo& t = tensors[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", t.name);
          o.Set("dtype", sdn::tensor_type_name(t));
          Napi::Array shape = Napi::Array::New(env, t.shape.size());
          for (size_t d = 0; d < t.shape.size(); ++d) shape.Set(d, static_cast<double>(t.shape[d]));
          o.Set("shape", shape);
          o.Set("bytes", static_cast<double>(t.nbytes));
          list.Set(i, o);
        }
        out.Set("tensors", list);
        return out;
      });
}

}  // namespace

void InitModelFile(Napi::Env env, Napi::Object exports) {
  exports.Set("inspectFile", Napi::Function::New(env, InspectFile, "inspectFile"));
}

}  // namespace sdnode
