// Textual-inversion embedding files for lib/embeddings.ts.
#pragma once

#include <napi.h>

namespace sdnode {

void InitEmbeddingFile(Napi::Env env, Napi::Object exports);

}  // namespace sdnode
