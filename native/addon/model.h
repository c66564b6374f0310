// JS class NativeModel over sdn::Model (lib/model.ts wraps it).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <napi.h>

#include "job.h"
#include "metadata_json.h"
#include "pipeline/architecture.h"
#include "pipeline/model.h"

namespace sdnode {

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, AddonData& data);
  explicit NativeModel(const Napi::CallbackInfo& info);

 private:
  // static load({ model?, unet?, vae?, textEncoder?, textEncoder2?, ema, device, threads,
  //               weightType }, onProgress) -> JobHandle<NativeModel>
  static Napi::Value Load(const Napi::CallbackInfo& info);
  // { device, weightType, sources: [...], tokenizerDir, deviceBytes, mappedBytes, loadMs }
  Napi::Value Info(const Napi::CallbackInfo& info);
  // The file metadata as JSON texts and the count left out (metadata_json.h), made by the load job.
  Napi::Value Metadata(const Napi::CallbackInfo& info);
  // What the engine read of the networks at load (pipeline/architecture.h):
  // { unet?: { inChannels, outChannels, modelChannels, contextDim, admChannels, latentMultiple },
  //   unetError?, vae: { decoder, encoder, latentChannels, decoderScale, encoderScale },
  //   textEncoders: [{ prefix, width, layers, vocab, positions, projection }] }
  Napi::Value Architecture(const Napi::CallbackInfo& info);
  // [{ name, shape, from, to, bytes, mapped }]
  Napi::Value Weights(const Napi::CallbackInfo& info);
  // checksums(names: string[]) -> JobHandle<string[]> (16 hex digits each)
  Napi::Value Checksums(const Napi::CallbackInfo& info);
  // encodeTokens(ids: Int32Array, windows, { prefix?, heads?, quickGelu?, clipSkip? }, onProgress)
  //   -> JobHandle<Float32Array> [windows][positions][width]
  Napi::Value EncodeTokens(const Napi::CallbackInfo& info);
  // runUnet({ x, batch, channels, height, width, timesteps, context, contextTokens, heads?, headDim? },
  //   onProgress) -> JobHandle<Float32Array>
  Napi::Value RunUnet(const Napi::CallbackInfo& info);
  // decodeLatent(latent, scaleFactor, tiling?, onProgress) -> JobHandle<Image>
  // (tiling: { enabled, tile, overlap } in latent cells, or undefined = whole)
  Napi::Value DecodeLatent(const Napi::CallbackInfo& info);
  // encodeImageMoments(image, tiling?, onProgress) -> JobHandle<Latent> (mean and log-variance channels)
  Napi::Value EncodeImageMoments(const Napi::CallbackInfo& info);
  // encodeImage(image, { scale, seed?: bigint, rng: 'cuda'|'cpu', tiling? }, onProgress) -> JobHandle<Latent>:
  // the posterior sampled with a seeded RNG (its mean without a seed), times scale
  Napi::Value EncodeImage(const Napi::CallbackInfo& info);
  // vaeComputeBytes(width, height) -> { decode, encode }: compute-buffer bytes of one untiled
  // pass over a width × height pixel image (null where that half of the VAE is missing)
  Napi::Value VaeComputeBytes(const Napi::CallbackInfo& info);
  // generate(params, onProgress) -> JobHandle<{ images, textEncodeMs, samplingMs, decodeMs }>
  // (params: see lib/native.ts NativeGenerateParams)
  Napi::Value Generate(const Napi::CallbackInfo& info);
  // loadLora(path, onProgress) -> JobHandle<NativeLora>: the file read, checked and matched to
  // this model's weights (lora/lora.h)
  Napi::Value LoadLora(const Napi::CallbackInfo& info);
  // loadControlNet(path, { device, threads }, onProgress) -> JobHandle<NativeControlNet>
  // (native/addon/controlnet.h)
  Napi::Value LoadControlNet(const Napi::CallbackInfo& info);
  // patchedWeights([{ lora: NativeLora, weight }], names: string[], onProgress) -> JobHandle<Float32Array[]>:
  // the named weights as the networks take them with those LoRAs (for tests)
  Napi::Value PatchedWeights(const Napi::CallbackInfo& info);
  // (scale) the VAE convolutions' input scale (lib/ decides; set right after load).
  Napi::Value SetVaeConvInputScale(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  sdn::Model& engine(Napi::Env env);

  std::shared_ptr<sdn::Model> engine_;
  MetadataForJs metadata_;
  sdn::ArchitectureFacts architecture_;
};

}  // namespace sdnode
