// The mapping tables from each file convention onto the internal (LDM / stable-diffusion.cpp)
// tensor names. One small function per convention; every structural number (levels, res
// blocks per level, where attention sits) is read from the names present, never assumed.
//
// Sources of the facts (looked up, no code taken):
//  - diffusers `scripts/convert_diffusers_to_original_stable_diffusion.py` and
//    `loaders/single_file_utils.py` (DIFFUSERS_TO_LDM_MAPPING, the resnet/attention renames,
//    the VAE mid-block attention names in both the old query/key/value/proj_attn and the new
//    to_q/to_k/to_v/to_out.0 spelling, conv_attn_to_linear's [C,C,1,1] <-> [C,C]).
//  - stable-diffusion.cpp `model.cpp` / `name_conversion.cpp`: its prefix map
//    (conditioner.embedders.0. -> cond_stage_model., conditioner.embedders.1. ->
//    cond_stage_model.1., text_encoder.2/te2 -> cond_stage_model.1.transformer.), the OpenCLIP ->
//    HF table (ln_1 -> layer_norm1, mlp.c_fc -> mlp.fc1, positional_embedding ->
//    embeddings.position_embedding.weight, model.text_projection and HF text_projection.weight
//    -> transformer.text_model.text_projection), its `unused_tensors` list (DDPM buffers,
//    model_ema.decay/num_updates, cond_stage_model.model.text_projection, logit_scale).
//    Its loaders before late 2025 split OpenCLIP's attn.in_proj_weight into
//    self_attn.{q,k,v}_proj rows (TensorStorage::chunk(3)), so its GGUF files hold either the
//    split names or, from later versions, a fused `self_attn.in_proj.{weight,bias}`; both load.
//  - PyTorch nn.MultiheadAttention packs in_proj as [q; k; v] rows; OpenCLIP computes the
//    pooled output as `x @ text_projection` ([width, proj]) where HF's
//    CLIPTextModelWithProjection applies an nn.Linear ([proj, width]): the OpenCLIP tensor is
//    the transpose of the HF one. stable-diffusion.cpp (since its PR #397) applies
//    `text_projection` as a linear weight, i.e. in HF orientation, and copies whichever it
//    finds without transposing; our internal tensor is the HF orientation.
//  - LDM's LitEma stores `model_ema.<param name with "model." dropped and every dot removed>`.
#include "io/name_map.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "core/error.h"

namespace sdn {

const char* tensor_mapping_op_name(TensorMapping::Op op) {
  switch (op) {
    case TensorMapping::Op::View: return "view";
    case TensorMapping::Op::Reshape: return "reshape";
    case TensorMapping::Op::RowSlice: return "rowSlice";
    case TensorMapping::Op::Transpose2d: return "transpose2d";
  }
  return "?";
}

namespace {

using Shape = std::vector<int64_t>;

const std::string kUnet = "model.diffusion_model.";
const std::string kVae = "first_stage_model.";
const std::string kText1 = "cond_stage_model.transformer.text_model.";
const std::string kText2 = "cond_stage_model.1.transformer.text_model.";

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Names come from untrusted files: shown tamed and short in messages.
std::string shown(const std::string& s) {
  std::string out = "'";
  for (char c : s.substr(0, 160)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > 160) out += "...";
  return out + "'";
}

std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t at = 0;
  for (;;) {
    size_t dot = s.find('.', at);
    parts.push_back(s.substr(at, dot == std::string::npos ? std::string::npos : dot - at));
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  return parts;
}

std::string join_from(const std::vector<std::string>& parts, size_t from) {
  std::string out;
  for (size_t i = from; i < parts.size(); ++i) out += (i > from ? "." : "") + parts[i];
  return out;
}

// A block index from a name: plain decimal digits, small. -1 when it is not one.
int parse_index(const std::string& s) {
  if (s.empty() || s.size() > 4) return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

// One file tensor under consideration: its full name, the part after the component prefix,
// and its shape.
struct Item {
  const std::string* source;
  std::string local;
  const Shape* shape;
};

class Planner {
 public:
  explicit Planner(const std::vector<TensorInfo>& file) : file_(file) {}

  void view(const Item& it, const std::string& name) { add({name, *it.source, TensorMapping::Op::View, *it.shape, 0}); }

  void reshape(const Item& it, const std::string& name, Shape shape) {
    add({name, *it.source, TensorMapping::Op::Reshape, std::move(shape), 0});
  }

  // Splits a packed [3·C, ...] projection into q, k, v (rows in that order).
  void split_qkv(const Item& it, const std::string& q, const std::string& k, const std::string& v) {
    const Shape& s = *it.shape;
    if (s.empty() || s[0] <= 0 || s[0] % 3 != 0)
      fail(ErrorCode::ModelFormat, "tensor " + shown(*it.source) + " " + shape_text(s) +
                                       ": a packed q/k/v projection needs a first dimension divisible by 3");
    Shape part = s;
    part[0] = s[0] / 3;
    add({q, *it.source, TensorMapping::Op::RowSlice, part, 0});
    add({k, *it.source, TensorMapping::Op::RowSlice, part, part[0]});
    add({v, *it.source, TensorMapping::Op::RowSlice, part, 2 * part[0]});
  }

  void transpose(const Item& it, const std::string& name) {
    const Shape& s = *it.shape;
    if (s.size() != 2)
      fail(ErrorCode::ModelFormat, "tensor " + shown(*it.source) + " " + shape_text(s) + ": expected a 2-D matrix");
    add({name, *it.source, TensorMapping::Op::Transpose2d, {s[1], s[0]}, 0});
  }

  void convention(const std::string& c) { conventions_.insert(c); }

  // Replaces the source of an already planned tensor (EMA weights).
  std::vector<TensorMapping>& tensors() { return plan_.tensors; }

  NamePlan finish() {
    std::set<std::string> used;
    for (const auto& m : plan_.tensors) used.insert(m.source);
    for (const auto& t : file_)
      if (!used.count(t.name)) plan_.dropped.push_back(t.name);
    // A family-specific LDM layout names the whole file; plain "ldm" beside it says nothing more.
    std::set<std::string> c = conventions_;
    if (c.count("ldm") && (c.count("ldm-sd2") || c.count("ldm-sdxl"))) c.erase("ldm");
    if (c.empty()) plan_.convention = "unknown";
    for (const auto& s : c) plan_.convention += (plan_.convention.empty() ? "" : "+") + s;
    return std::move(plan_);
  }

 private:
  void add(TensorMapping m) {
    auto [it, fresh] = taken_.emplace(m.name, m.source);
    if (!fresh)
      fail(ErrorCode::ModelFormat, "tensors " + shown(it->second) + " and " + shown(m.source) +
                                       " both map to the internal tensor " + shown(m.name));
    plan_.tensors.push_back(std::move(m));
  }

  const std::vector<TensorInfo>& file_;
  NamePlan plan_;
  std::unordered_map<std::string, std::string> taken_;
  std::set<std::string> conventions_;
};

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

// `items` hold the UNet's names with their prefix removed.
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

// ---------------------------------------------------------------------------------------------
// Text encoders

// OpenCLIP text tower -> HF CLIPTextModel (the same table as sd.cpp's open_clip_to_hf_clip).
const std::map<std::string, std::string> kOpenClipTop = {
    {"token_embedding.weight", "embeddings.token_embedding.weight"},
    {"positional_embedding", "embeddings.position_embedding.weight"},
    {"ln_final.weight", "final_layer_norm.weight"},
    {"ln_final.bias", "final_layer_norm.bias"},
};
const std::map<std::string, std::string> kOpenClipBlock = {
    {"ln_1", "layer_norm1"},   {"ln_2", "layer_norm2"},         {"mlp.c_fc", "mlp.fc1"},
    {"mlp.c_proj", "mlp.fc2"}, {"attn.out_proj", "self_attn.out_proj"},
};

// `slot`: the internal text_model prefix; `projection`: whether this encoder keeps its
// text_projection (SDXL's second encoder pools through it; SD2's and CLIP-L's are unused).
// `label`: the convention these names belong to.
void map_text(Planner& p, const std::vector<Item>& items, const std::string& slot, bool projection, const std::string& label) {
  for (const auto& it : items) {
    const std::string& n = it.local;
    // HF CLIPTextModel(WithProjection): text_model.* (or, from old transformers, without text_model.).
    std::string hf;
    if (starts_with(n, "text_model.")) hf = n.substr(11);
    else if (starts_with(n, "embeddings.") || starts_with(n, "encoder.") || starts_with(n, "final_layer_norm.")) hf = n;
    if (!hf.empty()) {
      p.convention(label.empty() ? "diffusers" : label);
      if (hf == "text_projection") {  // sd.cpp's internal name: already HF orientation
        if (projection) p.view(it, slot + hf);
        continue;
      }
      // sd.cpp GGUF files from late 2025 on keep OpenCLIP's packed projection, renamed.
      for (const char* leaf : {"weight", "bias"}) {
        const std::string packed = std::string("self_attn.in_proj.") + leaf;
        if (starts_with(hf, "encoder.layers.") && ends_with(hf, "." + packed)) {
          const std::string layer = slot + hf.substr(0, hf.size() - packed.size());
          p.split_qkv(it, layer + "self_attn.q_proj." + leaf, layer + "self_attn.k_proj." + leaf, layer + "self_attn.v_proj." + leaf);
          hf.clear();
          break;
        }
      }
      if (!hf.empty()) p.view(it, slot + hf);
      continue;
    }
    if (n == "text_projection.weight") {  // CLIPTextModelWithProjection's nn.Linear
      p.convention(label.empty() ? "diffusers" : label);
      if (projection) p.view(it, slot + "text_projection");
      continue;
    }
    // OpenCLIP.
    const std::string open_clip = label.empty() ? "openclip" : label;
    if (auto top = kOpenClipTop.find(n); top != kOpenClipTop.end()) {
      p.convention(open_clip);
      p.view(it, slot + top->second);
      continue;
    }
    if (n == "text_projection") {  // [width, proj], applied as x @ P
      p.convention(open_clip);
      if (projection) p.transpose(it, slot + "text_projection");
      continue;
    }
    const std::string blocks = "transformer.resblocks.";
    if (!starts_with(n, blocks)) continue;
    const auto parts = split_dots(n.substr(blocks.size()));
    const int layer_index = parse_index(parts[0]);
    if (layer_index < 0 || parts.size() < 3) continue;
    p.convention(open_clip);
    const std::string layer = slot + "encoder.layers." + parts[0] + ".";
    const std::string rest = join_from(parts, 1);
    if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
      const std::string leaf = rest == "attn.in_proj_weight" ? "weight" : "bias";
      p.split_qkv(it, layer + "self_attn.q_proj." + leaf, layer + "self_attn.k_proj." + leaf, layer + "self_attn.v_proj." + leaf);
      continue;
    }
    const std::string leaf = parts.back();
    auto b = kOpenClipBlock.find(rest.substr(0, rest.size() - leaf.size() - 1));
    if (b != kOpenClipBlock.end()) p.view(it, layer + b->second + "." + leaf);
  }
}

// ---------------------------------------------------------------------------------------------
// Whole files and component files

// LDM DDPM buffers (ldm/models/diffusion/ddpm.py register_schedule) keep their names.
const std::set<std::string> kDdpmBuffers = {
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights",
};

enum class Part { Unet, Vae, Text1, Text2 };

struct Prefix {
  std::string prefix;
  Part part;
  std::string label;  // convention of the text encoder names under it ("" = by their spelling)
};

// Single-file prefixes, most specific first (sd.cpp's prefix map; diffusers LDM_*_KEY).
const std::vector<Prefix> kCheckpointPrefixes = {
    {"model.diffusion_model.", Part::Unet, ""},
    {"unet.", Part::Unet, ""},
    {"first_stage_model.", Part::Vae, ""},
    {"vae.", Part::Vae, ""},
    {"cond_stage_model.1.transformer.", Part::Text2, "ldm-sdxl"},
    {"cond_stage_model.transformer.", Part::Text1, "ldm"},
    {"cond_stage_model.model.", Part::Text1, "ldm-sd2"},
    {"conditioner.embedders.0.transformer.", Part::Text1, "ldm-sdxl"},
    {"conditioner.embedders.0.model.", Part::Text1, "ldm-sd2"},  // SD2 in the sgm layout
    {"conditioner.embedders.1.model.", Part::Text2, "ldm-sdxl"},
    {"text_encoder_2.", Part::Text2, "diffusers"},
    {"text_encoder.", Part::Text1, "diffusers"},
};

const std::vector<Prefix>& component_prefixes(Component c) {
  static const std::vector<Prefix> unet = {{"model.diffusion_model.", Part::Unet, ""}, {"diffusion_model.", Part::Unet, ""},
                                           {"unet.", Part::Unet, ""}, {"", Part::Unet, ""}};
  static const std::vector<Prefix> vae = {{"first_stage_model.", Part::Vae, ""}, {"vae.", Part::Vae, ""}, {"", Part::Vae, ""}};
  static const std::vector<Prefix> text1 = {
      {"cond_stage_model.transformer.", Part::Text1, "ldm"},          {"cond_stage_model.model.", Part::Text1, "ldm-sd2"},
      {"conditioner.embedders.0.transformer.", Part::Text1, "ldm-sdxl"}, {"conditioner.embedders.0.model.", Part::Text1, "ldm-sd2"},
      {"text_encoder.", Part::Text1, "diffusers"},                      {"", Part::Text1, ""}};
  static const std::vector<Prefix> text2 = {{"cond_stage_model.1.transformer.", Part::Text2, "ldm-sdxl"},
                                            {"conditioner.embedders.1.model.", Part::Text2, "ldm-sdxl"},
                                            {"text_encoder_2.", Part::Text2, "diffusers"},
                                            {"", Part::Text2, ""}};
  switch (c) {
    case Component::Unet: return unet;
    case Component::Vae: return vae;
    case Component::TextEncoder: return text1;
    case Component::TextEncoder2: return text2;
    case Component::Checkpoint: break;
  }
  return kCheckpointPrefixes;
}

// The LitEma key of an internal UNet name: "model.diffusion_model.a.b" -> "model_ema.diffusion_modelab".
std::string ema_key(const std::string& internal) {
  std::string rest = internal.substr(6);  // drop "model."
  rest.erase(std::remove(rest.begin(), rest.end(), '.'), rest.end());
  return "model_ema." + rest;
}

}  // namespace

NamePlan plan_names(Component c, const std::vector<TensorInfo>& file_tensors, const NameMapOptions& o) {
  Planner p(file_tensors);
  const auto& prefixes = component_prefixes(c);
  // Grouped by component and, for text encoders, by prefix (each prefix has its own label).
  std::vector<Item> unet, vae;
  std::map<size_t, std::vector<Item>> text;
  std::unordered_map<std::string, const TensorInfo*> ema;
  std::vector<const TensorInfo*> buffers;
  for (const auto& t : file_tensors) {
    if (c == Component::Checkpoint) {
      if (starts_with(t.name, "model_ema.")) {
        ema.emplace(t.name, &t);
        continue;
      }
      if (kDdpmBuffers.count(t.name)) {
        buffers.push_back(&t);
        continue;
      }
    }
    for (size_t i = 0; i < prefixes.size(); ++i) {
      const Prefix& pre = prefixes[i];
      if (!starts_with(t.name, pre.prefix) || t.name.size() == pre.prefix.size()) continue;
      Item it{&t.name, t.name.substr(pre.prefix.size()), &t.shape};
      if (pre.part == Part::Unet) unet.push_back(std::move(it));
      else if (pre.part == Part::Vae) vae.push_back(std::move(it));
      else text[i].push_back(std::move(it));
      break;
    }
  }

  if (!unet.empty()) map_unet(p, unet);
  if (!vae.empty()) map_vae(p, vae);
  for (const auto& [i, items] : text) {
    const Prefix& pre = prefixes[i];
    const bool second = pre.part == Part::Text2;
    map_text(p, items, second ? kText2 : kText1, second, pre.label);
  }
  for (const TensorInfo* b : buffers) p.view(Item{&b->name, b->name, &b->shape}, b->name);

  // EMA: LitEma holds a copy of every UNet parameter; model_ema.decay / num_updates are
  // bookkeeping and, like EMA weights not asked for, dropped.
  if (o.ema && !ema.empty()) {
    for (auto& m : p.tensors()) {
      if (!starts_with(m.name, kUnet) || m.op != TensorMapping::Op::View || m.source != m.name) continue;
      auto e = ema.find(ema_key(m.name));
      if (e == ema.end()) continue;
      if (e->second->shape != m.shape)
        fail(ErrorCode::ModelFormat, "EMA tensor " + shown(e->first) + " " + shape_text(e->second->shape) + " does not match " +
                                         shown(m.name) + " " + shape_text(m.shape));
      m.source = e->first;
    }
  }
  return p.finish();
}

void apply_name_plan(const NamePlan& plan, const TensorStore& in, TensorStore& out) {
  for (const TensorMapping& m : plan.tensors) {
    const TensorInfo* src = in.find(m.source);
    if (!src) fail(ErrorCode::ModelFormat, "tensor " + shown(m.source) + " (for " + shown(m.name) + ") is not in the file");
    const std::string what = "tensor " + shown(m.source) + " " + shape_text(src->shape) + " as " + shown(m.name) + " " + shape_text(m.shape);
    TensorInfo t = *src;
    t.name = m.name;
    t.shape = m.shape;
    for (int64_t d : m.shape)
      if (d < 0) fail(ErrorCode::ModelFormat, what + ": negative dimension");
    switch (m.op) {
      case TensorMapping::Op::View:
        if (src->shape != m.shape) fail(ErrorCode::ModelFormat, what + ": shapes differ");
        break;
      case TensorMapping::Op::Reshape:
        if (src->numel() != t.numel()) fail(ErrorCode::ModelFormat, what + ": element counts differ");
        if (src->dtype == DType::Ggml && (src->shape.empty() || m.shape.empty() || src->shape.back() != m.shape.back()))
          fail(ErrorCode::ModelFormat, what + ": a block-quantized tensor keeps its row length");
        break;
      case TensorMapping::Op::RowSlice: {
        const Shape& s = src->shape;
        if (s.empty() || m.shape.size() != s.size() || s[0] <= 0 || m.row_begin < 0 || m.shape[0] > s[0] ||
            m.row_begin > s[0] - m.shape[0] || !std::equal(s.begin() + 1, s.end(), m.shape.begin() + 1))
          fail(ErrorCode::ModelFormat, what + ": rows " + std::to_string(m.row_begin) + "+" +
                                           (m.shape.empty() ? std::string("?") : std::to_string(m.shape[0])) + " do not fit");
        if (src->nbytes % static_cast<size_t>(s[0]) != 0) fail(ErrorCode::ModelFormat, what + ": rows of unequal size");
        const size_t row = src->nbytes / static_cast<size_t>(s[0]);
        t.data = src->data + row * static_cast<size_t>(m.row_begin);
        t.nbytes = row * static_cast<size_t>(m.shape[0]);
        break;
      }
      case TensorMapping::Op::Transpose2d: {
        const Shape& s = src->shape;
        if (s.size() != 2 || m.shape.size() != 2 || m.shape[0] != s[1] || m.shape[1] != s[0])
          fail(ErrorCode::ModelFormat, what + ": not a 2-D transpose");
        const size_t es = dtype_size(src->dtype);
        if (es == 0) fail(ErrorCode::ModelFormat, what + ": a block-quantized tensor cannot be transposed");
        const size_t rows = static_cast<size_t>(s[0]), cols = static_cast<size_t>(s[1]);
        if (src->nbytes != rows * cols * es) fail(ErrorCode::ModelFormat, what + ": byte size does not match the shape");
        uint8_t* dst = out.own_buffer(src->nbytes);
        for (size_t r = 0; r < rows; ++r)
          for (size_t col = 0; col < cols; ++col)
            std::copy_n(src->data + (r * cols + col) * es, es, dst + (col * rows + r) * es);
        t.data = dst;
        break;
      }
    }
    out.add(std::move(t));
  }
}

}  // namespace sdn
