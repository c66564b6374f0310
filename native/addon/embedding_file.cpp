// readEmbeddingFile(path) -> { format, tensors: [{ name, shape, data: Float32Array }] }: a
// textual-inversion embedding file (safetensors, GGUF, or a torch .pt/.bin through the
// non-executing pickle reader), its floating-point tensors as f32. Synchronous, for
// model.tokenize(): lib/embeddings.ts caps the file's size first, so the read is short. Which
// tensor is the embedding, and whether it fits the model, lib/embeddings.ts decides.
#include "embedding_file.h"

#include <string>
#include <vector>

#include "convert.h"
#include "core/error.h"
#include "io/model_file.h"
#include "errors.h"

namespace sdnode {

namespace {

// Values read at most. An embedding is a few vectors per text encoder (75 × (768 + 1280) at the
// very most); a file past this is a model or something else, and would cost memory to convert.
constexpr int64_t kMaxEmbeddingValues = int64_t{1} << 22;


Napi::Value ReadEmbeddingFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Object out = Napi::Object::New(env);
  try {
    sdn::ModelFile file = sdn::open_model_file(path);
    out.Set("format", sdn::file_format_name(file.format));
    Napi::Array list = Napi::Array::New(env);
    int64_t values = 0;
    for (const sdn::TensorInfo& t : file.store.tensors()) {
      if (!sdn::is_float_dtype(t.dtype) && t.dtype != sdn::DType::Ggml) continue;  // a .pt's step counts and token ids
      values += t.numel();
      if (values > kMaxEmbeddingValues) {
        sdn::fail(sdn::ErrorCode::ModelFormat, "'" + path + "' holds more than " + std::to_string(kMaxEmbeddingValues) +
                                                   " values: not a textual-inversion embedding");
      }
      Napi::Float32Array data = Napi::Float32Array::New(env, static_cast<size_t>(t.numel()));
      sdn::TensorStore::to_f32(t, data.Data());
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", t.name);
      o.Set("shape", shape_to_js(env, t.shape));
      o.Set("data", data);
      list.Set(list.Length(), o);
    }
    out.Set("tensors", list);
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, describe_current_exception());
  }
  return out;
}

}  // namespace

void InitEmbeddingFile(Napi::Env env, Napi::Object exports) {
  exports.Set("readEmbeddingFile", Napi::Function::New(env, ReadEmbeddingFile, "readEmbeddingFile"));
}

}  // namespace sdnode
