#include "lora/lora_names.h"

#include <algorithm>
#include <map>
#include <set>

#include "io/name_map.h"

namespace sdn {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = s.find('.', start)) != std::string::npos; start = dot + 1) parts.push_back(s.substr(start, dot - start));
  parts.push_back(s.substr(start));
  return parts;
}

int index_of(const std::string& s) {
  if (s.empty() || s.size() > 6 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return std::stoi(s);
}

std::string join_from(const std::vector<std::string>& parts, size_t from) {
  std::string out;
  for (size_t i = from; i < parts.size(); ++i) out += (out.empty() ? "" : ".") + parts[i];
  return out;
}

// LDM ResBlock -> diffusers ResnetBlock2D sub-modules.
const std::map<std::string, std::string> kResnetRest = {
    {"in_layers.0", "norm1"},  {"in_layers.2", "conv1"},  {"emb_layers.1", "time_emb_proj"},
    {"out_layers.0", "norm2"}, {"out_layers.3", "conv2"}, {"skip_connection", "conv_shortcut"},
};

// LDM top-level modules -> diffusers.
const std::map<std::string, std::string> kTop = {
    {"input_blocks.0.0", "conv_in"},        {"time_embed.0", "time_embedding.linear_1"},
    {"time_embed.2", "time_embedding.linear_2"}, {"out.0", "conv_norm_out"},
    {"out.2", "conv_out"},                  {"label_emb.0.0", "add_embedding.linear_1"},
    {"label_emb.0.2", "add_embedding.linear_2"},
};

std::string resnet_rest(const std::string& rest) {
  auto it = kResnetRest.find(rest);
  return it == kResnetRest.end() ? "" : it->second;
}

// Component tags of the lookup table.
const std::string kUnet = "unet:", kText1 = "te1:", kText2 = "te2:";

// Strips `prefix` from `key` into `rest`.
bool take(const std::string& key, const std::string& prefix, std::string& rest) {
  if (!starts_with(key, prefix)) return false;
  rest = key.substr(prefix.size());
  return true;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ldm_to_diffusers_unet_modules(const std::vector<std::string>& ldm_modules) {
  // 1. The levels, from the input blocks: a block with `.0.op` is a level's downsampler.
  std::set<int> input_blocks, downsamplers;
  for (const std::string& m : ldm_modules) {
    const auto parts = split_dots(m);
    if (parts.size() < 3 || parts[0] != "input_blocks") continue;
    const int i = index_of(parts[1]);
    if (i < 1) continue;
    input_blocks.insert(i);
    if (parts[2] == "0" && parts.size() > 3 && parts[3] == "op") downsamplers.insert(i);
  }
  std::map<int, std::pair<int, int>> down_place;  // input block -> (level, resnet)
  int level = 0, j = 0, per_level = -1;
  for (int i : input_blocks) {
    if (downsamplers.count(i)) {
      down_place[i] = {level, -1};
      if (per_level < 0) per_level = j;
      ++level;
      j = 0;
    } else {
      down_place[i] = {level, j++};
    }
  }
  if (per_level < 0) per_level = j;

  // 2. Each module by its block.
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& m : ldm_modules) {
    const auto parts = split_dots(m);
    std::string d;
    for (const auto& [ldm, diffusers] : kTop) {
      if (m == ldm) d = diffusers;
    }
    if (d.empty() && parts.size() >= 3 && parts[0] == "input_blocks") {
      auto it = down_place.find(index_of(parts[1]));
      if (it != down_place.end()) {
        const auto [lv, r] = it->second;
        const std::string rest = join_from(parts, 3);
        if (r < 0 && parts[2] == "0" && rest == "op") {
          d = "down_blocks." + std::to_string(lv) + ".downsamplers.0.conv";
        } else if (r >= 0 && parts[2] == "0" && !resnet_rest(rest).empty()) {
          d = "down_blocks." + std::to_string(lv) + ".resnets." + std::to_string(r) + "." + resnet_rest(rest);
        } else if (r >= 0 && parts[2] == "1" && !rest.empty()) {
          d = "down_blocks." + std::to_string(lv) + ".attentions." + std::to_string(r) + "." + rest;
        }
      }
    } else if (d.empty() && parts.size() >= 3 && parts[0] == "middle_block") {
      const std::string rest = join_from(parts, 2);
      if (parts[1] == "0" && !resnet_rest(rest).empty()) d = "mid_block.resnets.0." + resnet_rest(rest);
      if (parts[1] == "1") d = "mid_block.attentions.0." + rest;
      if (parts[1] == "2" && !resnet_rest(rest).empty()) d = "mid_block.resnets.1." + resnet_rest(rest);
    } else if (d.empty() && parts.size() >= 3 && parts[0] == "output_blocks" && per_level >= 0) {
      const int k = index_of(parts[1]);
      if (k >= 0) {
        const std::string lv = std::to_string(k / (per_level + 1)), r = std::to_string(k % (per_level + 1));
        const std::string rest = join_from(parts, 3);
        if (parts[2] == "0" && !resnet_rest(rest).empty()) d = "up_blocks." + lv + ".resnets." + r + "." + resnet_rest(rest);
        else if ((parts[2] == "1" || parts[2] == "2") && rest == "conv") d = "up_blocks." + lv + ".upsamplers.0.conv";
        else if (parts[2] == "1" && !rest.empty()) d = "up_blocks." + lv + ".attentions." + r + "." + rest;
      }
    }
    if (!d.empty()) out.emplace_back(m, d);
  }
  return out;
}

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
      modules_[kUnet + underscored(rest)] = module;
    } else if (take(module, kInternalText1, rest)) {
      modules_[kText1 + "text_model_" + underscored(rest)] = module;
    } else if (take(module, kInternalText2, rest)) {
      modules_[kText2 + "text_model_" + underscored(rest)] = module;
    }
  }
  for (const auto& [ldm, diffusers] : ldm_to_diffusers_unet_modules({unet_modules.begin(), unet_modules.end()})) {
    modules_.emplace(kUnet + underscored(diffusers), kInternalUnet + ldm);
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
  if (ends_with(key, "_lora")) key.erase(key.size() - 5);
  if (ends_with(key, ".to_out")) key += ".0";

  std::string tagged;
  if (take(key, "lora_unet_", rest) || take(key, "lycoris_unet_", rest)) tagged = kUnet + rest;
  else if (take(key, "lora_te1_", rest) || take(key, "lora_te_", rest) || take(key, "lycoris_te1_", rest) ||
           take(key, "lycoris_te_", rest))
    tagged = kText1 + rest;
  else if (take(key, "lora_te2_", rest) || take(key, "lycoris_te2_", rest)) tagged = kText2 + rest;
  else if (take(key, "unet.", rest) || take(key, "model.diffusion_model.", rest) || take(key, "diffusion_model.", rest))
    tagged = kUnet + underscored(rest);
  else if (take(key, "text_encoder_2.", rest)) tagged = kText2 + underscored(rest);
  else if (take(key, "text_encoder.", rest)) tagged = kText1 + underscored(rest);
  else if (take(key, "cond_stage_model.transformer.", rest) || take(key, "conditioner.embedders.0.transformer.", rest))
    tagged = kText1 + underscored(rest);
  else return "";
  auto it = modules_.find(tagged);
  return it == modules_.end() ? "" : it->second;
}

}  // namespace sdn
