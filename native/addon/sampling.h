// sampling: synchronous test-facing bindings of the engine's RNGs, schedules and samplers.
#pragma once

#include <napi.h>

namespace sdnode {

void InitSampling(Napi::Env env, Napi::Object exports);

}  // namespace sdnode
