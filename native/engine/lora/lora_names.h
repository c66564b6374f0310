// Which model weight a LoRA module names. LoRA files name their modules after the trainer's
// view of the model, not ours:
//   kohya / LyCORIS   lora_unet_<module path with '_'>, lora_te_ (SD1/SD2), lora_te1_ / lora_te2_ (SDXL);
//                     SD1/SD2 UNet paths are diffusers modules, SDXL's are LDM modules
//   diffusers / PEFT  unet.<diffusers module>, text_encoder.<HF CLIP module>, text_encoder_2.…
//   LDM dotted        model.diffusion_model.<LDM module>, diffusion_model.<LDM module>
// Every form is reduced to (component, module path with '_' for '.'), and the model's own
// weight names give the table of those paths: LDM and diffusers spellings for the UNet, HF
// CLIP spellings for the text encoders (the internal names, see io/name_map.h).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

namespace sdn {

class LoraTargetIndex {
 public:
  // `weight_names`: the loaded model's internal tensor names.
  explicit LoraTargetIndex(const std::vector<std::string>& weight_names);

  // The internal module (the weight name without ".weight"/".bias") a LoRA module key names,
  // or "" when it names nothing of this model.
  std::string module_of(const std::string& lora_module_key) const;

 private:
  // "<component>:<path with _>" -> internal module
  std::unordered_map<std::string, std::string> modules_;
};

}  // namespace sdn
