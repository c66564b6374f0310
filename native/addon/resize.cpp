// resizePlanes(data: Float32Array, channels, width, height, outWidth, outHeight, filter, antialias)
//   -> Float32Array [channels][outHeight][outWidth]; filter: 'nearest' | 'nearest-exact' |
//   'bilinear' | 'bicubic' | 'lanczos'.
#include "resize.h"

#include <string>

#include "core/error.h"
#include "pipeline/latent_resize.h"

namespace sdnode {

namespace {

constexpr double kMaxValues = 1 << 24;  // small planes for tests: bounded memory

int int_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 65536 && d == static_cast<int>(d)))
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer 1 … 65536");
  return static_cast<int>(d);
}

Napi::Value ResizePlanes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8) throw Napi::TypeError::New(env, "resizePlanes(data, channels, width, height, outWidth, outHeight, filter, antialias)");
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "data must be a Float32Array");
  Napi::Float32Array data = info[0].As<Napi::Float32Array>();
  sdn::Latent in;
  in.channels = int_arg(info, 1, "channels");
  in.width = int_arg(info, 2, "width");
  in.height = int_arg(info, 3, "height");
  const int ow = int_arg(info, 4, "outWidth"), oh = int_arg(info, 5, "outHeight");
  if (double(in.channels) * in.width * in.height > kMaxValues || double(in.channels) * ow * oh > kMaxValues)
    throw Napi::RangeError::New(env, "at most 2^24 values in and out");
  if (data.ElementLength() != size_t(in.channels) * in.width * in.height)
    throw Napi::RangeError::New(env, "data must hold channels × width × height values");
  if (!info[6].IsString() || !info[7].IsBoolean()) throw Napi::TypeError::New(env, "filter: string, antialias: boolean");
  in.data.assign(data.Data(), data.Data() + data.ElementLength());
  sdn::Latent out;
  try {
    out = sdn::resize_planes(in, ow, oh, sdn::parse_resize_filter(info[6].As<Napi::String>().Utf8Value()), info[7].As<Napi::Boolean>().Value());
  } catch (const sdn::Error& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  Napi::Float32Array result = Napi::Float32Array::New(env, out.data.size());
  std::copy(out.data.begin(), out.data.end(), result.Data());
  return result;
}

}  // namespace

void InitResize(Napi::Env env, Napi::Object exports) {
  exports.Set("resizePlanes", Napi::Function::New(env, ResizePlanes, "resizePlanes"));
}

}  // namespace sdnode
