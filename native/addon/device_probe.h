// probeDevice: the engine's device self-test (pipeline/device_probe.h), synchronous; the loader
// runs it in a child process before trusting a GPU module.
#pragma once

#include <napi.h>

namespace sdnode {

void InitDeviceProbe(Napi::Env env, Napi::Object exports);

}  // namespace sdnode
