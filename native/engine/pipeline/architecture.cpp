#include "pipeline/architecture.h"

#include "core/error.h"
#include "io/name_map.h"
#include "nn/autoencoder_kl.h"
#include "nn/clip_text.h"
#include "nn/unet.h"

namespace sdn {

namespace {

// The structure only: one head, so any width loads; the caller's heads matter only to compute.
bool describe_text(WeightLookup& w, const std::string& prefix, TextEncoderFacts& out) {
  if (!w.has(prefix + "embeddings.token_embedding.weight")) return false;
  try {
    const ClipTextEncoder e = ClipTextEncoder::load(w, prefix, 1, true);
    out.prefix = prefix;
    out.width = e.width;
    out.layers = e.layer_count();
    out.vocab = e.vocab;
    out.positions = e.positions;
    out.projection = e.text_projection ? e.text_projection->ne[1] : 0;
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

ArchitectureFacts describe_architecture(WeightLookup& w) {
  ArchitectureFacts f;
  if (w.has(kInternalUnet + "input_blocks.0.0.weight")) {
    try {
      const UnetNetwork net = UnetNetwork::load(w);
      f.unet.present = true;
      f.unet.in_channels = net.in_channels();
      f.unet.out_channels = net.out_channels();
      f.unet.model_channels = net.model_channels();
      f.unet.context_dim = net.context_dim();
      f.unet.adm_channels = net.adm_channels();
      f.unet.latent_multiple = net.side_multiple();
    } catch (const Error& e) {
      f.unet.missing = e.what();
    }
  }
  try {
    const VaeDecoder d = VaeDecoder::load(w);
    f.vae.decoder = true;
    f.vae.latent_channels = d.latent_channels();
    f.vae.decoder_scale = d.upscale();
  } catch (const Error&) {
  }
  try {
    const VaeEncoder e = VaeEncoder::load(w);
    f.vae.encoder = true;
    if (!f.vae.decoder) f.vae.latent_channels = e.moment_channels() / 2;
    f.vae.encoder_scale = e.downscale();
  } catch (const Error&) {
  }
  for (const std::string& prefix : {kInternalText1, kInternalText2}) {
    TextEncoderFacts t;
    if (describe_text(w, prefix, t)) f.text_encoders.push_back(std::move(t));
  }
  return f;
}

}  // namespace sdn
