// convertModel: a model file to GGUF in one weight type, as a job.
#pragma once

#include <napi.h>

namespace sdnode {

void InitConvertModel(Napi::Env env, Napi::Object exports);

}  // namespace sdnode
