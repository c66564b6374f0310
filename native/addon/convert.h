// Plain JS values <-> engine structs, copied on the JS thread before a job starts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <napi.h>

#include "pipeline/image.h"
#include "pipeline/model.h"

namespace sdnode {

// Throw a TypeError naming `what` unless the value has the expected shape.
std::string get_string(const Napi::Object& obj, const char* key, bool required);
int get_int(const Napi::Object& obj, const char* key, int fallback);
double get_number(const Napi::Object& obj, const char* key, double fallback);
bool get_bool(const Napi::Object& obj, const char* key, bool fallback);

Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& v);
// A tensor shape (outermost first) as an array of numbers.
Napi::Array shape_to_js(Napi::Env env, const std::vector<int64_t>& shape);
// A tensor checksum as JS sees it: 16 hex digits.
std::string checksum_hex(uint64_t checksum);

// { width, height, channels, data: Uint8Array }
sdn::Image image_from_js(const Napi::Value& value);
Napi::Object image_to_js(Napi::Env env, sdn::Image& image);
// { width, height, channels, data: Uint8Array } from interleaved 8-bit pixels (a copy).
Napi::Object pixels_to_js(Napi::Env env, int width, int height, int channels, const std::vector<uint8_t>& pixels);
// { channels, width, height, data: Float32Array }
sdn::Latent latent_from_js(const Napi::Value& value);
Napi::Object latent_to_js(Napi::Env env, sdn::Latent& latent);

// { enabled, tile, overlap } (latent cells), or undefined: untiled. The engine checks the ranges.
sdn::VaeTiling tiling_from_js(const Napi::Value& v, const char* what);

}  // namespace sdnode
