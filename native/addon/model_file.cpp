// inspectFile(path, checksums, onProgress) -> JobHandle<{ format, fileSize, metadataChunks, metadataOmitted, tensors }>:
// reads a model file's index off the JS thread. Tensor data is only read for checksums. A tensor
// whose stored type its role cannot take (nn/weight_roles.h) carries `refused`: why.
#include "model_file.h"

#include <vector>

#include "convert.h"
#include "io/model_file.h"
#include "nn/weight_roles.h"
#include "job.h"
#include "metadata_json.h"

namespace sdnode {

namespace {

Napi::Value InspectFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  bool checksums = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  // Everything JS gets, made on the job's thread; the file itself (its map, its store) is
  // closed there too: freeing a hostile file's structures took 11 ms of the JS thread.
  struct Tensor {
    std::string name, dtype, refused, checksum;
    std::vector<int64_t> shape;
    size_t bytes = 0;
  };
  struct Result {
    std::string format;
    uint64_t file_size = 0;
    std::vector<Tensor> tensors;
    MetadataForJs metadata;
  };
  return Job<Result>::Start(
      env, Napi::Object(), info.Length() > 2 ? info[2] : env.Undefined(),
      [path, checksums](sdn::JobControl& job) {
        job.throw_if_cancelled();
        sdn::ModelFile file = sdn::open_model_file(path);
        Result r;
        r.format = sdn::file_format_name(file.format);
        r.file_size = file.file_size;
        r.metadata = metadata_for_js(file.store.take_metadata());
        const auto& tensors = file.store.tensors();
        r.tensors.reserve(tensors.size());
        for (size_t i = 0; i < tensors.size(); ++i) {
          const sdn::TensorInfo& t = tensors[i];
          // What loadModel and convertModel would refuse, reported rather than refused here:
          // inspecting is how a user finds out what is wrong with a file.
          r.tensors.push_back({t.name, sdn::tensor_type_name(t), sdn::stored_type_problem(t), {}, t.shape, t.nbytes});
          if (checksums) {
            job.throw_if_cancelled();
            r.tensors.back().checksum = checksum_hex(sdn::tensor_checksum(t));
            job.report(static_cast<int>(i + 1), static_cast<int>(tensors.size()));
          }
        }
        return r;
      },
      [](Napi::Env env, Result& r) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("format", r.format);
        out.Set("fileSize", static_cast<double>(r.file_size));
        out.Set("metadataChunks", strings_to_js(env, r.metadata.chunks));
        out.Set("metadataOmitted", static_cast<double>(r.metadata.omitted));
        Napi::Array list = Napi::Array::New(env, r.tensors.size());
        for (size_t i = 0; i < r.tensors.size(); ++i) {
          const Tensor& t = r.tensors[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", t.name);
          o.Set("dtype", t.dtype);
          o.Set("shape", shape_to_js(env, t.shape));
          o.Set("bytes", static_cast<double>(t.bytes));
          if (!t.refused.empty()) o.Set("refused", t.refused);
          if (!t.checksum.empty()) o.Set("checksum", t.checksum);
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
