#include "convert.h"

#include <cstdio>
#include <cstring>

namespace sdnode {

namespace {

[[noreturn]] void type_error(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

int positive_int(const Napi::Object& obj, const char* key, const char* what) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) type_error(obj.Env(), std::string(what) + "." + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 1 << 30) || d != static_cast<double>(static_cast<int>(d))) {
    throw Napi::RangeError::New(obj.Env(), std::string(what) + "." + key + " must be a positive integer");
  }
  return static_cast<int>(d);
}

}  // namespace

std::string get_string(const Napi::Object& obj, const char* key, bool required) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) type_error(obj.Env(), std::string(key) + " is required");
    return "";
  }
  if (!v.IsString()) type_error(obj.Env(), std::string(key) + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  return s;
}

int get_int(const Napi::Object& obj, const char* key, int fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) type_error(obj.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

double get_number(const Napi::Object& obj, const char* key, double fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) type_error(obj.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool get_bool(const Napi::Object& obj, const char* key, bool fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) type_error(obj.Env(), std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

sdn::Image image_from_js(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) type_error(env, "image must be an object");
  Napi::Object obj = value.As<Napi::Object>();
  sdn::Image image;
  image.width = positive_int(obj, "width", "image");
  image.height = positive_int(obj, "height", "image");
  image.channels = positive_int(obj, "channels", "image");
  Napi::Value data = obj.Get("data");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    type_error(env, "image.data must be a Uint8Array");
  }
  Napi::Uint8Array bytes = data.As<Napi::Uint8Array>();
  size_t expected = size_t(image.width) * image.height * image.channels;
  if (bytes.ElementLength() != expected) {
    throw Napi::RangeError::New(env, "image.data has " + std::to_string(bytes.ElementLength()) +
                                         " bytes, width*height*channels is " + std::to_string(expected));
  }
  image.data.assign(bytes.Data(), bytes.Data() + expected);
  return image;
}

Napi::Object pixels_to_js(Napi::Env env, int width, int height, int channels, const std::vector<uint8_t>& pixels) {
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("width", width);
  obj.Set("height", height);
  obj.Set("channels", channels);
  Napi::Uint8Array data = Napi::Uint8Array::New(env, pixels.size());
  std::memcpy(data.Data(), pixels.data(), pixels.size());
  obj.Set("data", data);
  return obj;
}

Napi::Object image_to_js(Napi::Env env, sdn::Image& image) {
  return pixels_to_js(env, image.width, image.height, image.channels, image.data);
}

sdn::Latent latent_from_js(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) type_error(env, "latent must be an object");
  Napi::Object obj = value.As<Napi::Object>();
  sdn::Latent latent;
  latent.channels = positive_int(obj, "channels", "latent");
  latent.width = positive_int(obj, "width", "latent");
  latent.height = positive_int(obj, "height", "latent");
  Napi::Value data = obj.Get("data");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    type_error(env, "latent.data must be a Float32Array");
  }
  Napi::Float32Array floats = data.As<Napi::Float32Array>();
  size_t expected = size_t(latent.width) * latent.height * latent.channels;
  if (floats.ElementLength() != expected) {
    throw Napi::RangeError::New(env, "latent.data has " + std::to_string(floats.ElementLength()) +
                                         " values, channels*width*height is " + std::to_string(expected));
  }
  latent.data.assign(floats.Data(), floats.Data() + expected);
  return latent;
}

Napi::Object latent_to_js(Napi::Env env, sdn::Latent& latent) {
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("channels", latent.channels);
  obj.Set("width", latent.width);
  obj.Set("height", latent.height);
  Napi::Float32Array data = Napi::Float32Array::New(env, latent.data.size());
  std::memcpy(data.Data(), latent.data.data(), latent.data.size() * sizeof(float));
  obj.Set("data", data);
  return obj;
}

Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(i, v[i]);
  return a;
}

Napi::Array shape_to_js(Napi::Env env, const std::vector<int64_t>& shape) {
  Napi::Array a = Napi::Array::New(env, shape.size());
  for (size_t d = 0; d < shape.size(); ++d) a.Set(d, static_cast<double>(shape[d]));
  return a;
}

std::string checksum_hex(uint64_t checksum) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(checksum));
  return hex;
}

// { enabled, tile, overlap } (latent cells), or undefined: untiled. The engine checks the ranges.
sdn::VaeTiling tiling_from_js(const Napi::Value& v, const char* what) {
  sdn::VaeTiling tiling;
  if (v.IsUndefined()) return tiling;
  if (!v.IsObject() || v.IsFunction())
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be { enabled, tile, overlap } or undefined");
  Napi::Object o = v.As<Napi::Object>();
  tiling.enabled = get_bool(o, "enabled", false);
  tiling.tile = get_int(o, "tile", tiling.tile);
  tiling.overlap = get_int(o, "overlap", tiling.overlap);
  return tiling;
}

}  // namespace sdnode
