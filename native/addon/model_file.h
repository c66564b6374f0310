// Model-file functions of the addon.
#pragma once

#include <napi.h>

namespace sdnode {

void InitModelFile(Napi::Env env, Napi::Object exports);

}  // namespace sdnode
