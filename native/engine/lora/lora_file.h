// A LoRA file's tensors grouped by the module they adapt, and each group's kind: kohya LoRA
// and LoCon (lora_down / lora_up, Tucker lora_mid), diffusers / PEFT (lora_A / lora_B), LyCORIS
// LoHa (hada_*) and LoKr (lokr_*), full-weight patches (diff, diff_b), and the DoRA magnitude
// (dora_scale, PEFT's lora_magnitude_vector) beside any of them. Names only: shapes are checked
// against the model's weights when the LoRA is matched to a model (lora/lora.h).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "io/tensor_store.h"

namespace sdn {

enum class LoraPart {
  Down, Up, Mid, Alpha, Scale, DoraScale,
  HadaW1A, HadaW1B, HadaW2A, HadaW2B, HadaT1, HadaT2,
  LokrW1, LokrW1A, LokrW1B, LokrW2, LokrW2A, LokrW2B, LokrT2,
  Diff, DiffBias,
};

const char* lora_part_name(LoraPart p);

struct LoraModule {
  std::string key;                               // as the file spells the module
  std::map<LoraPart, const TensorInfo*> parts;   // into the file's store
};

struct LoraGroups {
  std::vector<LoraModule> modules;   // in the file's order of first appearance
  std::vector<std::string> unparsed;  // tensor names with no known LoRA part
};

// Groups `store`'s tensors by module. Throws ModelFormat when a module has one part twice
// (e.g. `x.lora_A.weight` and `x.lora_down.weight`).
LoraGroups group_lora_tensors(const TensorStore& store);

}  // namespace sdn
