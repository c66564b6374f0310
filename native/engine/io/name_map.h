// One internal tensor naming for every model-file convention. The internal names are those of
// LDM single-file Stable Diffusion checkpoints, which stable-diffusion.cpp's GGUF files also use:
//   model.diffusion_model.*                       UNet (LDM openaimodel layout)
//   first_stage_model.*                           AutoencoderKL (LDM encoder/decoder layout,
//                                                 attention q/k/v/proj_out as [C, C, 1, 1] convs)
//   cond_stage_model.transformer.text_model.*     first text encoder, HF CLIPTextModel layout
//   cond_stage_model.1.transformer.text_model.*   SDXL's second text encoder (OpenCLIP bigG) in
//                                                 the same layout, plus text_model.text_projection
//                                                 ([projection, width], an nn.Linear weight)
// plus the DDPM schedule buffers (betas, alphas_cumprod, ...) under their own names.
//
// plan_names() reads only names and shapes and says, for each internal tensor, which file
// tensor it comes from and how (a view, a reshape, a block of rows, a transpose);
// apply_name_plan() then builds the internal store from a file's store without copying,
// except for transposes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/tensor_store.h"

namespace sdn {

// The internal places above, for the code that reads the networks from them.
inline const std::string kInternalUnet = "model.diffusion_model.";
inline const std::string kInternalVae = "first_stage_model.";
inline const std::string kInternalText1 = "cond_stage_model.transformer.text_model.";
inline const std::string kInternalText2 = "cond_stage_model.1.transformer.text_model.";

enum class Component {
  Checkpoint,    // a whole single file: UNet, VAE and text encoder(s) under their LDM prefixes
  Unet,          // a UNet file: diffusers `unet/`, or LDM names with or without a prefix
  Vae,           // a VAE file: diffusers `vae/`, or LDM names with or without first_stage_model.
  TextEncoder,   // the first text encoder: HF CLIPTextModel (`text_encoder/`) or OpenCLIP
  TextEncoder2,  // SDXL's second text encoder: HF CLIPTextModelWithProjection or OpenCLIP bigG
};

struct TensorMapping {
  std::string name;    // internal
  std::string source;  // name in the file
  enum class Op {
    View,        // the source as it is
    Reshape,     // the same bytes under another shape (same element count)
    RowSlice,    // rows [row_begin, row_begin + shape[0]) of the source's outermost dimension
    Transpose2d  // a 2-D source transposed (copied)
  } op = Op::View;
  std::vector<int64_t> shape;  // internal shape (outermost first, like TensorInfo)
  int64_t row_begin = 0;       // RowSlice: first row of the source's outermost dim
};

struct NamePlan {
  // "ldm" (SD1.x single file), "ldm-sd2" (OpenCLIP ViT-H under cond_stage_model.model),
  // "ldm-sdxl" (conditioner.embedders, or sd.cpp's cond_stage_model.1), "diffusers",
  // "openclip" (a bare OpenCLIP text model); several joined by '+'; "unknown" when nothing mapped.
  std::string convention;
  std::vector<TensorMapping> tensors;
  std::vector<std::string> dropped;  // file tensors no internal tensor comes from
};

struct NameMapOptions {
  // Take UNet weights from the EMA copy (`model_ema.<name without "model." and dots>`) where
  // the checkpoint has one.
  bool ema = false;
};

const char* tensor_mapping_op_name(TensorMapping::Op op);

// From names and shapes only (TensorInfo::data unused), no data read. Throws ModelFormat when
// two file tensors would give one internal name, or a shape does not fit its mapping.
NamePlan plan_names(Component c, const std::vector<TensorInfo>& file_tensors, const NameMapOptions& o);

// The family a single file's text-encoder places name, by the planner's own prefix table (and
// its refiner rule): "sd1", "sd2", "sdxl", "sdxl-refiner", or "" when names alone do not tell
// (a bare component, a diffusers CLIP-L, stable-diffusion.cpp's internal names of SD2.x).
std::string family_from_names(const std::vector<TensorInfo>& tensors);

// The other direction of the diffusers UNet mapping (for LoRA files, which name UNet modules
// in diffusers spelling): for each LDM UNet module path of a model (without
// "model.diffusion_model."), its diffusers UNet2DConditionModel path, where it has one. The
// block numbering comes from the modules present, as plan_names derives it.
std::vector<std::pair<std::string, std::string>> ldm_to_diffusers_unet_modules(const std::vector<std::string>& ldm_modules);

// Adds the mapped tensors of `in` to `out`: views into in's memory (Transpose2d copies into
// out.own_buffer). The views stay valid while `in` lives, or after out.absorb(std::move(in)).
// Throws ModelFormat when a source is missing or its shape or type does not fit the plan.
void apply_name_plan(const NamePlan& plan, const TensorStore& in, TensorStore& out);

}  // namespace sdn
