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

#include "io/name_map_internal.h"

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

using namespace name_map_detail;

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

// sgm's first embedder when it is OpenCLIP: SD2 in the sgm layout, or the SDXL refiner's bigG.
const std::string kRefinerEncoder = "conditioner.embedders.0.model.";

struct Prefix {
  std::string prefix;
  Part part;
  std::string label;   // convention of the text encoder names under it ("" = by their spelling)
  std::string family;  // the family a text encoder here names ("" = not by itself; family_from_names)
};

// Single-file prefixes, most specific first (sd.cpp's prefix map; diffusers LDM_*_KEY).
const std::vector<Prefix> kCheckpointPrefixes = {
    {"model.diffusion_model.", Part::Unet, ""},
    {"unet.", Part::Unet, ""},
    {"first_stage_model.", Part::Vae, ""},
    {"vae.", Part::Vae, ""},
    {"cond_stage_model.1.transformer.", Part::Text2, "ldm-sdxl", "sdxl"},
    {"cond_stage_model.transformer.", Part::Text1, "ldm", "sd1"},
    {"cond_stage_model.model.", Part::Text1, "ldm-sd2", "sd2"},
    {"conditioner.embedders.0.transformer.", Part::Text1, "ldm-sdxl", "sdxl"},
    {kRefinerEncoder, Part::Text1, "ldm-sd2", "sd2"},  // SD2 in the sgm layout, or the refiner (plan_names)
    {"conditioner.embedders.1.model.", Part::Text2, "ldm-sdxl", "sdxl"},
    {"text_encoder_2.", Part::Text2, "diffusers", "sdxl"},
    {"text_encoder.", Part::Text1, "diffusers", ""},
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

// A UNet that takes a vector y: LDM's label_emb, diffusers' add_embedding (`local`: the name
// after the UNet's prefix).
bool takes_vector_y(const std::string& local) { return starts_with(local, "label_emb.") || starts_with(local, "add_embedding."); }

// The SDXL refiner holds only sgm's second embedder (OpenCLIP bigG, which pools) at
// conditioner.embedders.0.model.: beside a UNet that takes a vector y and without a second
// encoder, that place is the second encoder's. (SD2 in the sgm layout has the same prefix and a
// UNet without label_emb.)
bool is_refiner_encoder(const Prefix& pre, bool unet_takes_y, bool has_second) {
  return unet_takes_y && !has_second && pre.prefix == kRefinerEncoder;
}

// The LitEma key of an internal UNet name: "model.diffusion_model.a.b" -> "model_ema.diffusion_modelab".
std::string ema_key(const std::string& internal) {
  std::string rest = internal.substr(6);  // drop "model."
  rest.erase(std::remove(rest.begin(), rest.end(), '.'), rest.end());
  return "model_ema." + rest;
}

}  // namespace

std::string family_from_names(const std::vector<TensorInfo>& tensors) {
  bool takes_y = false, first = false, second = false;
  std::set<const Prefix*> places;
  std::set<std::string> named;
  for (const TensorInfo& t : tensors) {
    for (const Prefix& pre : kCheckpointPrefixes) {
      if (!starts_with(t.name, pre.prefix)) continue;
      if (pre.part == Part::Unet) {
        takes_y = takes_y || takes_vector_y(t.name.substr(pre.prefix.size()));
      } else if (pre.part != Part::Vae) {
        (pre.part == Part::Text2 ? second : first) = true;
        places.insert(&pre);
        if (!pre.family.empty()) named.insert(pre.family);
      }
      break;
    }
  }
  // The planner's refiner rule, and bigG alone beside a UNet that takes y.
  const bool refiner = std::any_of(places.begin(), places.end(), [&](const Prefix* pre) { return is_refiner_encoder(*pre, takes_y, second); });
  if (refiner || (takes_y && second && !first)) return "sdxl-refiner";
  if (second || named.count("sdxl")) return first ? "sdxl" : "";
  if (first && takes_y) return "sdxl";  // an SDXL file without its bigG
  return named.size() == 1 ? *named.begin() : "";
}

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
  // The refiner's bigG goes to the second encoder's place, with its projection.
  const bool unet_takes_y = std::any_of(unet.begin(), unet.end(), [](const Item& it) { return takes_vector_y(it.local); });
  const bool has_second = std::any_of(text.begin(), text.end(), [&](const auto& e) { return prefixes[e.first].part == Part::Text2; });
  for (const auto& [i, items] : text) {
    const Prefix& pre = prefixes[i];
    const bool refiner = is_refiner_encoder(pre, unet_takes_y, has_second);
    const bool second = pre.part == Part::Text2 || refiner;
    map_text(p, items, second ? kText2 : kText1, second, refiner ? "ldm-sdxl" : pre.label);
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
        if (src->dtype == DType::Ggml && (src->unfolded_row > 0 || src->shape.empty() || m.shape.empty() || src->shape.back() != m.shape.back()))
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
