// A model as users hand it over — one checkpoint file, a diffusers folder, or separate component
// files (a UNet-only file, a swapped VAE, a text encoder) — opened into one TensorStore under
// the internal naming (io/name_map.h). Headers only: no tensor data is read here.
#pragma once

#include <string>
#include <vector>

#include "io/tensor_store.h"

namespace sdn {

struct ModelSources {
  std::string model;  // a single-file checkpoint or a diffusers folder; may be empty
  // Component files; each replaces that component of `model` when both have it.
  std::string unet, vae, text_encoder, text_encoder2;
  bool ema = false;  // UNet weights from the checkpoint's model_ema.* copy
};

struct SourceRecord {
  std::string component;   // "checkpoint", "unet", "vae", "textEncoder", "textEncoder2"
  std::string path;
  std::string format;      // "safetensors", "gguf", "torch"
  std::string convention;  // from the name plan: "ldm", "diffusers", ...
  size_t tensors = 0;      // taken from this file
  std::vector<std::string> dropped;  // names in the file that map to nothing
};

struct OpenedModel {
  TensorStore store;  // internal names; views into the files' memory maps
  std::vector<SourceRecord> sources;
  std::string tokenizer_dir;  // a diffusers folder's tokenizer/ (vocab.json + merges.txt), if any
};

// Throws FileAccess (missing or unreadable paths), ModelFormat (malformed files, a folder that
// is not a diffusers model), ModelCompatibility (nothing usable in a file).
OpenedModel open_model(const ModelSources& sources);

}  // namespace sdn
