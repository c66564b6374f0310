#include "lora/lora_names.h"

#include <algorithm>
#include <set>

#include "io/name_map_internal.h"

namespace sdn {

namespace {

using name_map_detail::ends_with;
using name_map_detail::starts_with;

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

// Component tags of the lookup table.
const std::string kUnetTag = "unet:", kText1Tag = "te1:", kText2Tag = "te2:";

// Strips `prefix` from `key` into `rest`.
bool take(const std::string& key, const std::string& prefix, std::string& rest) {
  if (!starts_with(key, prefix)) return false;
  rest = key.substr(prefix.size());
  return true;
}

}  // namespace

LoraTargetIndex::LoraTargetIndex(const std::vector<std::string>& weight_names) {
  std::set<std::string> unet_modules;
  for (const std::string& name : weight_names) {
    std::string module;
    if (ends_with(name, ".weight")) module = name.substr(0, name.size() - 7);
    else if (ends_with(name, ".bias")) module = name.substr(0, name.size() - 5);
    else continue;
    std::string rest;
    if (take(module, kInternalUnet, rest)) {
      unet_modules.insert(rest);
      modules_[kUnetTag + underscored(rest)] = module;
    } else if (take(module, kInternalText1, rest)) {
      modules_[kText1Tag + "text_model_" + underscored(rest)] = module;
    } else if (take(module, kInternalText2, rest)) {
      modules_[kText2Tag + "text_model_" + underscored(rest)] = module;
    }
  }
  for (const auto& [ldm, diffusers] : ldm_to_diffusers_unet_modules({unet_modules.begin(), unet_modules.end()})) {
    modules_.emplace(kUnetTag + underscored(diffusers), kInternalUnet + ldm);
  }
}

std::string LoraTargetIndex::module_of(const std::string& lora_module_key) const {
  std::string key = lora_module_key, rest;
  // Wrappers some trainers put around the names.
  for (const char* wrapper : {"base_model.model.", "lora.", "lycoris."}) {
    if (take(key, wrapper, rest)) key = rest;
  }
  // diffusers' old attention-processor names: attn1.processor.to_q_lora -> attn1.to_q.
  for (size_t p; (p = key.find(".processor.")) != std::string::npos;) key.erase(p, 10);
  if (ends_with(key, ".to_out")) key += ".0";

  std::string tagged;
  if (take(key, "lora_unet_", rest) || take(key, "lycoris_unet_", rest)) tagged = kUnetTag + rest;
  else if (take(key, "lora_te1_", rest) || take(key, "lora_te_", rest) || take(key, "lycoris_te1_", rest) ||
           take(key, "lycoris_te_", rest))
    tagged = kText1Tag + rest;
  else if (take(key, "lora_te2_", rest) || take(key, "lycoris_te2_", rest)) tagged = kText2Tag + rest;
  else if (take(key, "unet.", rest) || take(key, "model.diffusion_model.", rest) || take(key, "diffusion_model.", rest))
    tagged = kUnetTag + underscored(rest);
  else if (take(key, "text_encoder_2.", rest)) tagged = kText2Tag + underscored(rest);
  else if (take(key, "text_encoder.", rest)) tagged = kText1Tag + underscored(rest);
  else if (take(key, "cond_stage_model.transformer.", rest) || take(key, "conditioner.embedders.0.transformer.", rest))
    tagged = kText1Tag + underscored(rest);
  else return "";
  auto it = modules_.find(tagged);
  return it == modules_.end() ? "" : it->second;
}

}  // namespace sdn
