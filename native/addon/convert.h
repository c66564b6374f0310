// Plain JS values <-> engine structs, copied on the JS thread before a job starts.
#pragma once

#include <string>

#include <napi.h>

#include "pipeline/image.h"

namespace sdnode {

// Throw a TypeError naming `what` unless the value has the expected shape.
std::string get_string(const Napi::Object& obj, const char* key, bool required);
int get_int(const Napi::Object& obj, const char* key, int fallback);
bool get_bool(const Napi::Object& obj, const char* key, bool fallback);

// { width, height, channels, data: Uint8Array }
sdn::Image image_from_js(const Napi::Value& value);
Napi::Object image_to_js(Napi::Env env, sdn::Image& image);
// { channels, width, height, data: Float32Array }
sdn::Latent latent_from_js(const Napi::Value& value);
Napi::Object latent_to_js(Napi::Env env, sdn::Latent& latent);

}  // namespace sdnode
