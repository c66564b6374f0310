// resizePlanes: the engine's planar resize (pipeline/latent_resize.h), synchronous, for tests
// against reference interpolations.
#pragma once

#include <napi.h>

namespace sdnode {

void InitResize(Napi::Env env, Napi::Object exports);

}  // namespace sdnode
