// inspectFile(path, checksums, onProgress) -> JobHandle<{ format, fileSize, metadataChunks, tensors }>:
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
  struct Result {
    sdn::ModelFile file;
    std::vector<uint64_t> checksums;
    std::vector<std::string> metadata;
  };
  return Job<Result>::Start(
      env, Napi::Object(), info.Length() > 2 ? info[2] : env.Undefined(),
      [path, checksums](sdn::JobControl& job) {
        job.throw_if_cancelled();
        Result r{sdn::open_model_file(path), {}, {}};
        r.metadata = metadata_json_chunks(r.file.store.metadata());
        if (checksums) {
          const auto& tensors = r.file.store.tensors();
          for (size_t i = 0; i < tensors.size(); ++i) {
            job.throw_if_cancelled();
            r.checksums.push_back(sdn::tensor_checksum(tensors[i]));
            job.report(static_cast<int>(i + 1), static_cast<int>(tensors.size()));
          }
        }
        return r;
      },
      [](Napi::Env env, Result& r) -> Napi::Value {
        sdn::ModelFile& file = r.file;
        Napi::Object out = Napi::Object::New(env);
        out.Set("format", sdn::file_format_name(file.format));
        out.Set("fileSize", static_cast<double>(file.file_size));
        out.Set("metadataChunks", strings_to_js(env, r.metadata));
        const auto& tensors = file.store.tensors();
        Napi::Array list = Napi::Array::New(env, tensors.size());
        for (size_t i = 0; i < tensors.size(); ++i) {
          const sdn::TensorInfo& t = tensors[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", t.name);
          o.Set("dtype", sdn::tensor_type_name(t));
          o.Set("shape", shape_to_js(env, t.shape));
          o.Set("bytes", static_cast<double>(t.nbytes));
          // What loadModel and convertModel would refuse, reported rather than refused here:
          // inspecting is how a user finds out what is wrong with a file.
          const std::string refused = sdn::stored_type_problem(t);
          if (!refused.empty()) o.Set("refused", refused);
          if (i < r.checksums.size()) {
            o.Set("checksum", checksum_hex(r.checksums[i]));
          }
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
