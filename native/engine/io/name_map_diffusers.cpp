// UNet and VAE: LDM names pass through; diffusers UNet2DConditionModel and AutoencoderKL names
// map onto them, with the block numbering derived from the names present (levels, res blocks
// per level, where attention sits).
// Facts: diffusers' convert_diffusers_to_original_stable_diffusion.py and
// loaders/single_file_utils.py (DIFFUSERS_TO_LDM_MAPPING, conv_attn_to_linear), and
// stable-diffusion.cpp's convert_diffusers_unet_to_original_sd1/sdxl (see name_map.cpp).
#include <algorithm>
#include <map>
#include <set>

#include "io/name_map_internal.h"

namespace sdn::name_map_detail {

namespace {

// ---------------------------------------------------------------------------------------------
// UNet

// LDM UNetModel roots (openaimodel.py) and diffusers UNet2DConditionModel roots.
const std::set<std::string> kLdmUnetRoots = {"input_blocks", "middle_block", "output_blocks", "time_embed", "label_emb", "out"};
const std::set<std::string> kDiffusersUnetRoots = {"conv_in", "time_embedding", "add_embedding", "class_embedding",
                                                   "down_blocks", "mid_block", "up_blocks", "conv_norm_out", "conv_out"};

// diffusers ResnetBlock2D -> LDM ResBlock.
const std::map<std::string, std::string> kUnetResnet = {
    {"norm1", "in_layers.0"},  {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
    {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"},
};

// diffusers top-level modules -> LDM (DIFFUSERS_TO_LDM_MAPPING["unet"]; SDXL's add_embedding
// and unCLIP's class_embedding both become label_emb.0).
const std::map<std::string, std::string> kUnetTop = {
    {"conv_in", "input_blocks.0.0"},         {"time_embedding.linear_1", "time_embed.0"},
    {"time_embedding.linear_2", "time_embed.2"}, {"conv_norm_out", "out.0"},
    {"conv_out", "out.2"},                   {"add_embedding.linear_1", "label_emb.0.0"},
    {"add_embedding.linear_2", "label_emb.0.2"}, {"class_embedding.linear_1", "label_emb.0.0"},
    {"class_embedding.linear_2", "label_emb.0.2"},
};

// The blocks of one diffusers down/up level, as found in the names.
struct Level {
  std::set<int> resnets, attentions;
  bool sampler = false;  // downsamplers.0 / upsamplers.0
};

// Levels must be numbered 0..n-1 and their resnets 0..m-1; attention j sits on resnet j.
void check_levels(const std::map<int, Level>& levels, const char* what) {
  int expect = 0;
  for (const auto& [i, l] : levels) {
    if (i != expect++)
      fail(ErrorCode::ModelFormat, std::string("diffusers UNet: ") + what + " are not numbered 0, 1, 2, ... (" + what + "." +
                                       std::to_string(expect - 1) + " is missing)");
    int r = 0;
    for (int j : l.resnets)
      if (j != r++) fail(ErrorCode::ModelFormat, std::string("diffusers UNet: ") + what + "." + std::to_string(i) + " resnets are not numbered 0, 1, 2, ...");
    for (int j : l.attentions)
      if (!l.resnets.count(j))
        fail(ErrorCode::ModelFormat, std::string("diffusers UNet: ") + what + "." + std::to_string(i) + ".attentions." + std::to_string(j) + " has no resnet beside it");
  }
}

// Attention sub-names are the same in both (BasicTransformerBlock), except that some old
// diffusers files name attn's output projection `to_out` where the module is `to_out.0`.
std::string unet_attention_rest(const std::string& rest) {
  for (const char* leaf : {".to_out.weight", ".to_out.bias"})
    if (ends_with(rest, leaf)) return rest.substr(0, rest.size() - std::string(leaf).size()) + ".to_out.0" + (std::string(leaf).substr(7));
  return rest;
}

void map_diffusers_unet(Planner& p, const std::vector<Item>& items) {
  std::map<int, Level> down, up;
  bool mid_attention = false;
  for (const auto& it : items) {
    const auto parts = split_dots(it.local);
    if (parts.size() < 4) continue;
    const bool is_down = parts[0] == "down_blocks", is_up = parts[0] == "up_blocks";
    if (!is_down && !is_up) {
      if (parts[0] == "mid_block" && parts[1] == "attentions") mid_attention = true;
      continue;
    }
    const int i = parse_index(parts[1]), j = parse_index(parts[3]);
    if (i < 0 || j < 0) continue;
    Level& l = (is_down ? down : up)[i];
    if (parts[2] == "resnets") l.resnets.insert(j);
    else if (parts[2] == "attentions") l.attentions.insert(j);
    else if (parts[2] == (is_down ? "downsamplers" : "upsamplers") && j == 0) l.sampler = true;
  }
  check_levels(down, "down_blocks");
  check_levels(up, "up_blocks");

  // LDM numbers its blocks in order: input_blocks.0 is conv_in, then per level one block per
  // res block and one for the downsampler; output_blocks from 0, one per res block, the
  // upsampler inside the level's last block (after its attention, if the level has one).
  std::map<std::pair<int, int>, int> down_block, up_block;
  std::map<int, int> down_sampler, up_last;
  int n = 1;
  for (const auto& [i, l] : down) {
    for (int j : l.resnets) down_block[{i, j}] = n++;
    if (l.sampler) down_sampler[i] = n++;
  }
  n = 0;
  for (const auto& [i, l] : up) {
    for (int j : l.resnets) up_block[{i, j}] = n++;
    up_last[i] = n - 1;
  }

  for (const auto& it : items) {
    const auto parts = split_dots(it.local);
    const std::string& leaf = parts.back();
    const std::string module = it.local.substr(0, it.local.size() - leaf.size() - (parts.size() > 1 ? 1 : 0));
    std::string ldm;
    if (auto top = kUnetTop.find(module); top != kUnetTop.end()) {
      ldm = top->second + "." + leaf;
    } else if (parts.size() >= 5 && (parts[0] == "down_blocks" || parts[0] == "up_blocks")) {
      const bool is_down = parts[0] == "down_blocks";
      const int i = parse_index(parts[1]), j = parse_index(parts[3]);
      const std::string rest = join_from(parts, 4);
      const std::string blocks = is_down ? "input_blocks." : "output_blocks.";
      auto& index = is_down ? down_block : up_block;
      if (i < 0 || j < 0) {
      } else if (parts[2] == "resnets" && index.count({i, j})) {
        auto r = kUnetResnet.find(parts[4]);
        if (r != kUnetResnet.end()) ldm = blocks + std::to_string(index[{i, j}]) + ".0." + r->second + "." + join_from(parts, 5);
      } else if (parts[2] == "attentions" && index.count({i, j})) {
        ldm = blocks + std::to_string(index[{i, j}]) + ".1." + unet_attention_rest(rest);
      } else if (is_down && parts[2] == "downsamplers" && j == 0 && parts[4] == "conv" && down_sampler.count(i)) {
        ldm = blocks + std::to_string(down_sampler[i]) + ".0.op." + join_from(parts, 5);
      } else if (!is_down && parts[2] == "upsamplers" && j == 0 && parts[4] == "conv" && up_last.count(i)) {
        const int sub = up.at(i).attentions.empty() ? 1 : 2;
        ldm = blocks + std::to_string(up_last[i]) + "." + std::to_string(sub) + ".conv." + join_from(parts, 5);
      }
    } else if (parts.size() >= 4 && parts[0] == "mid_block") {
      // LDM middle_block: ResBlock, SpatialTransformer, ResBlock.
      const int j = parse_index(parts[2]);
      if (parts[1] == "resnets" && (j == 0 || j == 1)) {
        auto r = kUnetResnet.find(parts[3]);
        const int block = j == 0 ? 0 : (mid_attention ? 2 : 1);
        if (r != kUnetResnet.end()) ldm = "middle_block." + std::to_string(block) + "." + r->second + "." + join_from(parts, 4);
      } else if (parts[1] == "attentions" && j == 0) {
        ldm = "middle_block.1." + unet_attention_rest(join_from(parts, 3));
      }
    }
    if (ldm.empty() || ends_with(ldm, ".")) continue;  // not a known module: dropped
    p.view(it, kUnet + ldm);
  }
}

}  // namespace

void map_unet(Planner& p, const std::vector<Item>& items) {
  std::vector<Item> diffusers;
  for (const auto& it : items) {
    const std::string root = it.local.substr(0, it.local.find('.'));
    if (kLdmUnetRoots.count(root)) {
      p.convention("ldm");
      p.view(it, kUnet + it.local);
    } else if (kDiffusersUnetRoots.count(root)) {
      diffusers.push_back(it);
    }
  }
  if (!diffusers.empty()) {
    p.convention("diffusers");
    map_diffusers_unet(p, diffusers);
  }
}

// ---------------------------------------------------------------------------------------------
// VAE (AutoencoderKL)

namespace {

// A [C, C] linear attention weight becomes LDM's [C, C, 1, 1] 1×1 conv (diffusers
// conv_attn_to_linear does the reverse).
void vae_attention_weight(Planner& p, const Item& it, const std::string& name) {
  const Shape& s = *it.shape;
  if (ends_with(name, ".weight") && s.size() == 2) p.reshape(it, name, {s[0], s[1], 1, 1});
  else p.view(it, name);
}

// diffusers Attention in the VAE mid block, old and new spellings -> LDM AttnBlock.
const std::map<std::string, std::string> kVaeAttention = {
    {"group_norm", "norm"}, {"query", "q"}, {"to_q", "q"},       {"key", "k"},
    {"to_k", "k"},          {"value", "v"}, {"to_v", "v"},       {"proj_attn", "proj_out"},
    {"to_out.0", "proj_out"},
};

// diffusers ResnetBlock2D -> LDM ResnetBlock: the same names but the shortcut.
std::string vae_resnet_rest(const std::vector<std::string>& parts, size_t from) {
  if (from >= parts.size()) return "";
  const std::string& m = parts[from];
  if (m == "conv_shortcut") return "nin_shortcut." + join_from(parts, from + 1);
  if (m == "norm1" || m == "conv1" || m == "norm2" || m == "conv2" || m == "nin_shortcut") return join_from(parts, from);
  return "";
}

}  // namespace

void map_vae(Planner& p, const std::vector<Item>& items) {
  // The number of decoder levels, for diffusers' reversed up_blocks.
  int up_levels = 0;
  for (const auto& it : items) {
    const auto parts = split_dots(it.local);
    if (parts.size() > 2 && parts[0] == "decoder" && parts[1] == "up_blocks") up_levels = std::max(up_levels, parse_index(parts[2]) + 1);
  }
  for (const auto& it : items) {
    const auto parts = split_dots(it.local);
    const std::string& root = parts[0];
    if ((root == "quant_conv" || root == "post_quant_conv") && parts.size() == 2) {
      p.view(it, kVae + it.local);
      continue;
    }
    if ((root != "encoder" && root != "decoder") || parts.size() < 3) continue;
    const std::string& part = parts[1];
    const std::string half = kVae + root + ".";
    // conv_in / conv_out: the same in both layouts.
    if ((part == "conv_in" || part == "conv_out") && parts.size() == 3) {
      p.view(it, kVae + it.local);
      continue;
    }
    // LDM layout: the names are already internal (attention 1×1 convs may come as [C, C]).
    if (part == "norm_out" || (root == "encoder" && (part == "down" || part == "mid")) ||
        (root == "decoder" && (part == "up" || part == "mid"))) {
      p.convention("ldm");
      if (part == "mid" && parts.size() == 5 && parts[2] == "attn_1") vae_attention_weight(p, it, kVae + it.local);
      else p.view(it, kVae + it.local);
      continue;
    }
    std::string ldm;
    bool attention = false;
    if (part == "conv_norm_out" && parts.size() == 3) {
      ldm = "norm_out." + parts[2];
    } else if ((part == "down_blocks" && root == "encoder") || (part == "up_blocks" && root == "decoder")) {
      const int i = parse_index(parts[2]);
      const int j = parts.size() > 4 ? parse_index(parts[4]) : -1;
      if (i < 0 || j < 0) continue;
      const bool down = part == "down_blocks";
      const std::string level = down ? "down." + std::to_string(i) : "up." + std::to_string(up_levels - 1 - i);
      if (parts[3] == "resnets") {
        const std::string rest = vae_resnet_rest(parts, 5);
        if (!rest.empty()) ldm = level + ".block." + std::to_string(j) + "." + rest;
      } else if (parts[3] == (down ? "downsamplers" : "upsamplers") && j == 0 && parts.size() > 5 && parts[5] == "conv") {
        ldm = level + (down ? ".downsample.conv." : ".upsample.conv.") + join_from(parts, 6);
      }
    } else if (part == "mid_block" && parts.size() > 4) {
      const int j = parse_index(parts[3]);
      if (parts[2] == "resnets" && (j == 0 || j == 1)) {
        const std::string rest = vae_resnet_rest(parts, 4);
        if (!rest.empty()) ldm = std::string("mid.block_") + (j == 0 ? "1" : "2") + "." + rest;
      } else if (parts[2] == "attentions" && j == 0) {
        const std::string leaf = parts.back();
        const std::string module = join_from(parts, 4).substr(0, join_from(parts, 4).size() - leaf.size() - 1);
        auto a = kVaeAttention.find(module);
        if (a != kVaeAttention.end()) {
          ldm = "mid.attn_1." + a->second + "." + leaf;
          attention = true;
        }
      }
    }
    if (ldm.empty() || ends_with(ldm, ".")) continue;
    p.convention("diffusers");
    if (attention) vae_attention_weight(p, it, half + ldm);
    else p.view(it, half + ldm);
  }
}

}  // namespace sdn::name_map_detail

namespace sdn {

std::vector<std::pair<std::string, std::string>> ldm_to_diffusers_unet_modules(const std::vector<std::string>& ldm_modules) {
  using namespace name_map_detail;
  // The forward tables read backwards.
  auto resnet = [](const std::string& ldm_rest) -> std::string {
    for (const auto& [diffusers, ldm] : kUnetResnet) {
      if (ldm == ldm_rest) return diffusers;
    }
    return "";
  };
  auto top = [](const std::string& ldm_module) -> std::string {
    for (const auto& [diffusers, ldm] : kUnetTop) {
      if (ldm == ldm_module) return diffusers;  // map order: add_embedding before class_embedding
    }
    return "";
  };

  // 1. The levels, from the input blocks: a block with `.0.op` is a level's downsampler; the
  //    middle block has attention when it has three blocks.
  std::set<int> input_blocks, downsamplers;
  bool mid_attention = false;
  for (const std::string& m : ldm_modules) {
    const auto parts = split_dots(m);
    if (parts.size() >= 2 && parts[0] == "middle_block" && parts[1] == "2") mid_attention = true;
    if (parts.size() < 3 || parts[0] != "input_blocks") continue;
    const int i = parse_index(parts[1]);
    if (i < 1) continue;
    input_blocks.insert(i);
    if (parts[2] == "0" && parts.size() > 3 && parts[3] == "op") downsamplers.insert(i);
  }
  std::map<int, std::pair<int, int>> down_place;  // input block -> (level, resnet; -1 for the downsampler)
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
    std::string d = top(m);
    if (d.empty() && parts.size() >= 3 && parts[0] == "input_blocks") {
      auto it = down_place.find(parse_index(parts[1]));
      if (it != down_place.end()) {
        const auto [lv, r] = it->second;
        const std::string rest = join_from(parts, 3), level_path = "down_blocks." + std::to_string(lv);
        if (r < 0 && parts[2] == "0" && rest == "op") d = level_path + ".downsamplers.0.conv";
        else if (r >= 0 && parts[2] == "0" && !resnet(rest).empty()) d = level_path + ".resnets." + std::to_string(r) + "." + resnet(rest);
        else if (r >= 0 && parts[2] == "1" && !rest.empty()) d = level_path + ".attentions." + std::to_string(r) + "." + rest;
      }
    } else if (d.empty() && parts.size() >= 3 && parts[0] == "middle_block") {
      const std::string rest = join_from(parts, 2);
      const int block = parse_index(parts[1]);
      if (block == 1 && mid_attention) d = "mid_block.attentions.0." + rest;
      else if ((block == 0 || block == (mid_attention ? 2 : 1)) && !resnet(rest).empty())
        d = "mid_block.resnets." + std::to_string(block == 0 ? 0 : 1) + "." + resnet(rest);
    } else if (d.empty() && parts.size() >= 3 && parts[0] == "output_blocks") {
      const int k = parse_index(parts[1]);
      if (k >= 0) {
        const std::string lv = std::to_string(k / (per_level + 1)), r = std::to_string(k % (per_level + 1));
        const std::string rest = join_from(parts, 3);
        if (parts[2] == "0" && !resnet(rest).empty()) d = "up_blocks." + lv + ".resnets." + r + "." + resnet(rest);
        else if ((parts[2] == "1" || parts[2] == "2") && rest == "conv") d = "up_blocks." + lv + ".upsamplers.0.conv";
        else if (parts[2] == "1" && !rest.empty()) d = "up_blocks." + lv + ".attentions." + r + "." + rest;
      }
    }
    if (!d.empty()) out.emplace_back(m, d);
  }
  return out;
}

}  // namespace sdn
