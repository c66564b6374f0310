#include "io/name_map_controlnet.h"

#include <algorithm>
#include <set>

#include "io/name_map_internal.h"

namespace sdn {

using namespace name_map_detail;

namespace {

const std::set<std::string> kLdmRoots = {"time_embed", "label_emb", "input_hint_block", "input_blocks",
                                         "zero_convs", "middle_block", "middle_block_out"};

[[noreturn]] void not_controlnet(const TensorStore& file) {
  const std::string example = file.tensors().empty() ? "it holds no tensors" : "e.g. " + shown(file.tensors()[0].name);
  fail(ErrorCode::ModelFormat, "not a ControlNet file: neither 'input_hint_block.0.weight' (ControlNet-v1-1, maybe under "
                               "'control_model.') nor 'controlnet_cond_embedding.conv_in.weight' (diffusers) is in it (" +
                                   example + ")");
}

// The diffusers hint embedding's convs in order: conv_in, blocks.0.., conv_out.
std::string diffusers_hint_name(const std::vector<std::string>& parts, int blocks) {
  // parts: controlnet_cond_embedding.<conv_in | blocks.K | conv_out>.<weight | bias>
  if (parts.size() == 3 && parts[1] == "conv_in") return "input_hint_block.0." + parts[2];
  if (parts.size() == 3 && parts[1] == "conv_out") return "input_hint_block." + std::to_string(2 * blocks + 2) + "." + parts[2];
  if (parts.size() == 4 && parts[1] == "blocks") {
    const int k = parse_index(parts[2]);
    if (k >= 0 && k < blocks) return "input_hint_block." + std::to_string(2 * k + 2) + "." + parts[3];
  }
  return "";
}

}  // namespace

ControlNetNames map_controlnet_names(TensorStore&& file) {
  ControlNetNames out;
  Planner p(file.tensors());
  const auto has = [&](const std::string& n) { return file.find(n) != nullptr; };
  if (has(kInternalControlNet + "input_hint_block.0.weight") || has("input_hint_block.0.weight")) {
    out.convention = "ldm";
    const std::string prefix = has(kInternalControlNet + "input_hint_block.0.weight") ? kInternalControlNet : "";
    for (const TensorInfo& t : file.tensors()) {
      if (!starts_with(t.name, prefix)) continue;
      const std::string local = t.name.substr(prefix.size());
      if (!kLdmRoots.count(local.substr(0, local.find('.')))) continue;  // dropped
      p.view(Item{&t.name, local, &t.shape}, kInternalControlNet + local);
    }
  } else if (has("controlnet_cond_embedding.conv_in.weight")) {
    out.convention = "diffusers";
    int hint_blocks = 0;
    for (const TensorInfo& t : file.tensors()) {
      const auto parts = split_dots(t.name);
      if (parts.size() == 4 && parts[0] == "controlnet_cond_embedding" && parts[1] == "blocks")
        hint_blocks = std::max(hint_blocks, parse_index(parts[2]) + 1);
    }
    std::vector<Item> unet;
    for (const TensorInfo& t : file.tensors()) {
      const auto parts = split_dots(t.name);
      const Item it{&t.name, t.name, &t.shape};
      std::string name;
      if (parts[0] == "controlnet_cond_embedding") {
        name = diffusers_hint_name(parts, hint_blocks);
      } else if (parts[0] == "controlnet_down_blocks" && parts.size() == 3 && parse_index(parts[1]) >= 0) {
        name = "zero_convs." + parts[1] + ".0." + parts[2];
      } else if (parts[0] == "controlnet_mid_block" && parts.size() == 2) {
        name = "middle_block_out.0." + parts[1];
      } else {
        unet.push_back(it);
        continue;
      }
      if (!name.empty()) p.view(it, kInternalControlNet + name);
    }
    // The UNet's own diffusers map names them under the UNet's place: moved to the ControlNet's.
    map_unet(p, unet);
    for (TensorMapping& m : p.tensors())
      if (starts_with(m.name, kUnet)) m.name = kInternalControlNet + m.name.substr(kUnet.size());
  } else {
    not_controlnet(file);
  }
  NamePlan plan = p.finish();
  out.dropped = std::move(plan.dropped);
  apply_name_plan(plan, file, out.store);
  out.store.absorb(std::move(file));
  return out;
}

}  // namespace sdn
