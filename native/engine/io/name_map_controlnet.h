// ControlNet file conventions onto one internal naming, ControlNet-v1-1's under
// "control_model." (nn/controlnet.h):
//   "ldm"        cldm.ControlNet state dicts (ControlNet-v1-1 .pth / .safetensors, most GGUF
//                files): time_embed, label_emb, input_hint_block, input_blocks, zero_convs,
//                middle_block, middle_block_out — bare or under `control_model.` (then anything
//                else in the file, e.g. a whole SD model beside it, is dropped);
//   "diffusers"  diffusers ControlNetModel (a `controlnet/` folder's
//                diffusion_pytorch_model.safetensors): the UNet-like modules as the UNet's
//                diffusers map reads them (conv_in, time_embedding, add_embedding,
//                down_blocks, mid_block), and
//                  controlnet_cond_embedding.conv_in     -> input_hint_block.0
//                  controlnet_cond_embedding.blocks.K    -> input_hint_block.(2K + 2)
//                  controlnet_cond_embedding.conv_out    -> input_hint_block.(2·blocks + 2)
//                  controlnet_down_blocks.N              -> zero_convs.N.0
//                  controlnet_mid_block                  -> middle_block_out.0
#pragma once

#include <string>
#include <vector>

#include "io/tensor_store.h"

namespace sdn {

inline const std::string kInternalControlNet = "control_model.";

struct ControlNetNames {
  TensorStore store;                 // internal names; views into the file's memory, kept alive
  std::string convention;            // "ldm" or "diffusers"
  std::vector<std::string> dropped;  // file tensors that are not the ControlNet's
};

// Throws ModelFormat when the names are not a ControlNet's in either convention (naming what
// is there instead).
ControlNetNames map_controlnet_names(TensorStore&& file);

}  // namespace sdn
