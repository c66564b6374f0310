#include "io/model_sources.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "io/model_file.h"
#include "io/name_map.h"

namespace sdn {

namespace {

namespace fs = std::filesystem;

struct ComponentInfo {
  Component component;
  const char* key;            // as SourceRecord::component and the JS option
  const char* folder;         // its folder in a diffusers model
  const char* internal_prefix;
};

const ComponentInfo kComponents[] = {
    {Component::Unet, "unet", "unet", "model.diffusion_model."},
    {Component::Vae, "vae", "vae", "first_stage_model."},
    {Component::TextEncoder, "textEncoder", "text_encoder", "cond_stage_model.transformer."},
    {Component::TextEncoder2, "textEncoder2", "text_encoder_2", "cond_stage_model.1."},
};

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(fs::u8path(path), ec);
}

// The weights file of one diffusers component folder, "" when the folder has none. Full
// precision first, then the fp16 variants diffusers saves beside them; safetensors before the
// pickled .bin.
std::string diffusers_weights(const fs::path& folder) {
  static const char* const kNames[] = {
      "diffusion_pytorch_model.safetensors", "model.safetensors",       "diffusion_pytorch_model.fp16.safetensors",
      "model.fp16.safetensors",              "diffusion_pytorch_model.bin", "pytorch_model.bin",
      "diffusion_pytorch_model.fp16.bin",    "pytorch_model.fp16.bin",
  };
  std::error_code ec;
  for (const char* name : kNames) {
    const fs::path p = folder / name;
    if (fs::is_regular_file(p, ec)) return p.u8string();
  }
  for (const char* index : {"diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"}) {
    if (fs::exists(folder / index, ec))
      fail(ErrorCode::ModelCompatibility, "'" + folder.u8string() + "' holds weights split into shards (" + index +
                                              "); sharded diffusers components are not supported");
  }
  return "";
}

struct Builder {
  OpenedModel out;
  NameMapOptions options;

  // Maps `path` as `component` and adds what it holds, skipping internal names under `skip`
  // prefixes (components a separate file replaces).
  void add(const std::string& path, Component component, const char* key, const std::vector<std::string>& skip) {
    ModelFile file = open_model_file(path);
    NamePlan plan = plan_names(component, file.store.tensors(), options);
    std::vector<TensorMapping> kept;
    for (TensorMapping& m : plan.tensors) {
      bool replaced = false;
      for (const std::string& prefix : skip) replaced = replaced || starts_with(m.name, prefix.c_str());
      if (!replaced) kept.push_back(std::move(m));
    }
    plan.tensors = std::move(kept);
    if (plan.tensors.empty()) {
      std::string example = file.store.tensors().empty() ? "no tensors at all" : "e.g. '" + file.store.tensors()[0].name + "'";
      fail(ErrorCode::ModelCompatibility, "'" + path + "' holds no Stable Diffusion " +
                                              (component == Component::Checkpoint ? std::string("component") : key) +
                                              " weights that sdnode knows (" + example + ")");
    }
    apply_name_plan(plan, file.store, out.store);
    if (out.sources.empty()) {
      for (const auto& [k, v] : file.store.metadata()) out.store.set_metadata(k, v);
    }
    out.sources.push_back({key, path, file_format_name(file.format), plan.convention, plan.tensors.size(), plan.dropped});
    out.store.absorb(std::move(file.store));
  }
};

}  // namespace

OpenedModel open_model(const ModelSources& sources) {
  Builder b;
  b.options.ema = sources.ema;
  const std::string* component_paths[] = {&sources.unet, &sources.vae, &sources.text_encoder, &sources.text_encoder2};

  // Prefixes the separate component files take over from the model.
  std::vector<std::string> replaced;
  for (size_t i = 0; i < 4; ++i) {
    if (!component_paths[i]->empty()) replaced.push_back(kComponents[i].internal_prefix);
  }

  if (!sources.model.empty()) {
    if (is_directory(sources.model)) {
      const fs::path root = fs::u8path(sources.model);
      std::error_code ec;
      if (!fs::is_regular_file(root / "model_index.json", ec))
        fail(ErrorCode::ModelFormat, "'" + sources.model + "' is a folder without model_index.json: not a diffusers model");
      bool any = false;
      for (size_t i = 0; i < 4; ++i) {
        if (!component_paths[i]->empty()) continue;  // a separate file replaces this folder's
        const std::string weights = diffusers_weights(root / kComponents[i].folder);
        if (weights.empty()) continue;
        b.add(weights, kComponents[i].component, kComponents[i].key, {});
        any = true;
      }
      if (!any && replaced.empty())
        fail(ErrorCode::ModelCompatibility, "'" + sources.model + "' has no unet/, vae/ or text_encoder/ weights");
      const fs::path tokenizer = root / "tokenizer";
      if (fs::is_regular_file(tokenizer / "vocab.json", ec) && fs::is_regular_file(tokenizer / "merges.txt", ec))
        b.out.tokenizer_dir = tokenizer.u8string();
    } else {
      b.add(sources.model, Component::Checkpoint, "checkpoint", replaced);
    }
  }
  for (size_t i = 0; i < 4; ++i) {
    if (component_paths[i]->empty()) continue;
    b.add(*component_paths[i], kComponents[i].component, kComponents[i].key, {});
  }
  if (b.out.sources.empty()) fail(ErrorCode::InvalidArgument, "no model file given");
  return std::move(b.out);
}

}  // namespace sdn
