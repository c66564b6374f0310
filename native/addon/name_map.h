// planNames(component, tensors, options?): the engine's name plan for a file's tensor index.
#pragma once

#include <napi.h>

namespace sdnode {

void InitNameMap(Napi::Env env, Napi::Object exports);

}  // namespace sdnode
