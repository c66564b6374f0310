#include "lora/lora_file.h"

#include <unordered_map>

#include "core/error.h"

namespace sdn {

namespace {

struct Suffix {
  const char* text;
  LoraPart part;
};

// Longest first where one suffix ends another (".lora_A.default.weight" before ".lora_A.weight").
// Facts: kohya sd-scripts networks/lora.py, LyCORIS modules, PEFT's state dict, diffusers'
// attention-processor LoRA names, stable-diffusion.cpp's name_conversion.cpp.
constexpr Suffix kSuffixes[] = {
    {".lora_down.weight", LoraPart::Down},
    {".lora_up.weight", LoraPart::Up},
    {".lora_mid.weight", LoraPart::Mid},
    {".lora_A.default.weight", LoraPart::Down},
    {".lora_B.default.weight", LoraPart::Up},
    {".lora_A.weight", LoraPart::Down},
    {".lora_B.weight", LoraPart::Up},
    {".lora_linear_layer.down.weight", LoraPart::Down},
    {".lora_linear_layer.up.weight", LoraPart::Up},
    {"_lora.down.weight", LoraPart::Down},
    {"_lora.up.weight", LoraPart::Up},
    {".lora.down.weight", LoraPart::Down},
    {".lora.up.weight", LoraPart::Up},
    {".lora_magnitude_vector.default.weight", LoraPart::DoraScale},
    {".lora_magnitude_vector.weight", LoraPart::DoraScale},
    {".lora_magnitude_vector.default", LoraPart::DoraScale},
    {".lora_magnitude_vector", LoraPart::DoraScale},
    {".dora_scale", LoraPart::DoraScale},
    {".alpha", LoraPart::Alpha},
    {".scale", LoraPart::Scale},
    {".hada_w1_a", LoraPart::HadaW1A},
    {".hada_w1_b", LoraPart::HadaW1B},
    {".hada_w2_a", LoraPart::HadaW2A},
    {".hada_w2_b", LoraPart::HadaW2B},
    {".hada_t1", LoraPart::HadaT1},
    {".hada_t2", LoraPart::HadaT2},
    {".lokr_w1_a", LoraPart::LokrW1A},
    {".lokr_w1_b", LoraPart::LokrW1B},
    {".lokr_w2_a", LoraPart::LokrW2A},
    {".lokr_w2_b", LoraPart::LokrW2B},
    {".lokr_w1", LoraPart::LokrW1},
    {".lokr_w2", LoraPart::LokrW2},
    {".lokr_t2", LoraPart::LokrT2},
    {".diff_b", LoraPart::DiffBias},
    {".diff", LoraPart::Diff},
};

}  // namespace

const char* lora_part_name(LoraPart p) {
  for (const Suffix& s : kSuffixes) {
    if (s.part == p) return s.text + 1;
  }
  return "?";
}

LoraGroups group_lora_tensors(const TensorStore& store) {
  LoraGroups groups;
  std::unordered_map<std::string, size_t> index;
  for (const TensorInfo& t : store.tensors()) {
    const Suffix* found = nullptr;
    for (const Suffix& s : kSuffixes) {
      const std::string suffix = s.text;
      if (t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        found = &s;
        break;
      }
    }
    if (!found) {
      groups.unparsed.push_back(t.name);
      continue;
    }
    const std::string key = t.name.substr(0, t.name.size() - std::string(found->text).size());
    auto [it, fresh] = index.emplace(key, groups.modules.size());
    if (fresh) groups.modules.push_back({key, {}});
    LoraModule& m = groups.modules[it->second];
    if (!m.parts.emplace(found->part, &t).second)
      fail(ErrorCode::ModelFormat, "LoRA module '" + key + "' has its " + lora_part_name(found->part) + " twice ('" + t.name + "')");
  }
  return groups;
}

}  // namespace sdn
