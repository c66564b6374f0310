// What a loaded model's networks are, as the engine reads them from the weights: the facts lib/
// needs for its checks and defaults (size multiple, context width, latent channels, the text
// encoders and their depth), so that it does not re-derive them from tensor names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/weight_lookup.h"

namespace sdn {

struct UnetFacts {
  bool present = false;
  std::string missing;         // why not, when a UNet was expected but does not load
  int64_t in_channels = 0;     // 4, or 9 for inpainting
  int64_t out_channels = 0;
  int64_t model_channels = 0;
  int64_t context_dim = 0;     // what the cross-attention takes
  int64_t adm_channels = 0;    // width of the vector y (0: no label_emb)
  int64_t latent_multiple = 0; // latent sides must be multiples of this
};

struct VaeFacts {
  bool decoder = false, encoder = false;
  int64_t latent_channels = 0;  // the decoder's input (else the encoder's output)
  int decoder_scale = 0;        // pixels per latent cell
  int encoder_scale = 0;
};

struct TextEncoderFacts {
  std::string prefix;       // the internal place ("cond_stage_model.transformer.text_model.", …)
  int64_t width = 0;
  int layers = 0;
  int64_t vocab = 0, positions = 0;
  int64_t projection = 0;   // text_projection's output width; 0 without one (it cannot pool)
};

struct ArchitectureFacts {
  UnetFacts unet;
  VaeFacts vae;
  std::vector<TextEncoderFacts> text_encoders;  // in place order: the first, then the second
};

// Reads each network's structure (no data, no compute). A part whose names are absent is
// reported absent; one that is there but does not load says why in `missing` (UNet) or is left
// out. Never throws for a model that loaded.
ArchitectureFacts describe_architecture(WeightLookup& weights);

}  // namespace sdn
