// Conversion to GGUF: every tensor in the type nn/weight_types.cpp's rules give it.
#include "pipeline/convert.h"

#include <algorithm>
#include <filesystem>
#include <unordered_map>
#include <map>
#include <cstdio>
#include <memory>
#include <random>
#include <system_error>
#include <vector>

#ifdef _WIN32
#include <process.h>
#define SDN_GETPID _getpid
#else
#include <unistd.h>
#define SDN_GETPID getpid
#endif

#include "core/error.h"
#include "ggml.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/model_file.h"
#include "io/model_sources.h"
#include "io/name_map.h"
#include "nn/weight_types.h"

namespace sdn {

namespace {

// GGUF order: innermost first; a scalar as one element (GGUF needs at least one dimension); an
// unfolded kernel as its [IC·KH·KW, OC] matrix.
std::vector<int64_t> gguf_ne(const TensorInfo& t, ggml_type type) {
  if (t.shape.size() > GGML_MAX_DIMS)
    fail(ErrorCode::ModelCompatibility, "tensor '" + t.name + "' has " + std::to_string(t.shape.size()) +
                                            " dimensions; GGUF holds at most " + std::to_string(GGML_MAX_DIMS));
  std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
  if (ne.empty()) ne.push_back(1);
  for (int64_t n : ne) {
    if (n < 1) fail(ErrorCode::ModelCompatibility, "tensor '" + t.name + "' has an empty dimension; GGUF cannot store it");
  }
  if (is_unfolded_kernel(t, type)) return {t.numel() / t.shape[0], t.shape[0]};
  return ne;
}

// What a GGUF of ours already says, else what the text encoders' key places name (the name
// map's table); "" when neither tells.
std::string family_of(const TensorStore& store) {
  auto it = store.metadata().find("sdnode.family");
  if (it != store.metadata().end()) return it->second;
  return family_from_names(store.tensors());
}

// What gets converted: a file's tensors under the internal naming when it holds Stable Diffusion
// components (what they do not use is dropped), a non-SD file's tensors as they are.
struct Source {
  TensorStore store;
  bool gguf = false;
  std::string family;
  std::vector<std::string> dropped;
};

Source open_source(const std::string& path) {
  Source src;
  std::error_code ec;
  if (std::filesystem::is_directory(std::filesystem::u8path(path), ec)) {
    ModelSources sources;
    sources.model = path;
    OpenedModel opened = open_model(sources);
    src.store = std::move(opened.store);
    for (const SourceRecord& r : opened.sources) src.dropped.insert(src.dropped.end(), r.dropped.begin(), r.dropped.end());
    src.family = family_of(src.store);
    return src;
  }
  ModelFile file = open_model_file(path);
  src.gguf = file.format == FileFormat::Gguf;
  src.family = family_of(file.store);  // before renaming: the original text encoder keys tell it
  NamePlan plan = plan_names(Component::Checkpoint, file.store.tensors(), NameMapOptions{});
  if (plan.tensors.empty()) {
    src.store = std::move(file.store);
    return src;
  }
  // In the file's order, so a converted file lists its tensors as the source does.
  std::unordered_map<std::string, size_t> position;
  for (size_t i = 0; i < file.store.tensors().size(); ++i) position.emplace(file.store.tensors()[i].name, i);
  std::stable_sort(plan.tensors.begin(), plan.tensors.end(), [&](const TensorMapping& a, const TensorMapping& b) {
    return position[a.source] < position[b.source];
  });
  apply_name_plan(plan, file.store, src.store);
  for (const auto& [key, value] : file.store.metadata()) src.store.set_metadata(key, value);
  src.store.absorb(std::move(file.store));
  src.dropped = std::move(plan.dropped);
  return src;
}

// Our own keys, written fresh each time; a GGUF of ours being converted again does not carry
// its old values along.
bool is_own_key(const std::string& key) {
  return key.rfind(kUnfoldedKernelKey, 0) == 0 || key == "general.architecture" || key == "general.file_type" || key == "general.quantization_version" ||
         key == "general.alignment" || key == "sdnode.family" || key == "sdnode.source" || key == "sdnode.version";
}

// Refuses a destination that exists and is not a regular file: a directory, FIFO, socket,
// device (/dev/null) or symlink (the JS layer resolves links under its policy first, so one here
// was planted meanwhile). A rename over any of them would replace it.
void check_destination(const std::string& path) {
  std::error_code ec;
  const std::filesystem::file_status s = std::filesystem::symlink_status(std::filesystem::u8path(path), ec);
  if (s.type() == std::filesystem::file_type::not_found) return;
  if (ec) fail(ErrorCode::FileAccess, "'" + path + "': " + ec.message());
  if (s.type() == std::filesystem::file_type::regular) return;
  const char* kind = "not a regular file";
  switch (s.type()) {
    case std::filesystem::file_type::directory: kind = "a directory"; break;
    case std::filesystem::file_type::fifo: kind = "a FIFO"; break;
    case std::filesystem::file_type::socket: kind = "a socket"; break;
    case std::filesystem::file_type::character: kind = "a character device"; break;
    case std::filesystem::file_type::block: kind = "a block device"; break;
    case std::filesystem::file_type::symlink: kind = "a symlink"; break;
    default: break;
  }
  fail(ErrorCode::OutputPath, "the destination '" + path + "' is " + std::string(kind) +
                                  "; sdnode writes only regular files, and does not replace anything else");
}

// A fresh hidden name in the destination's folder (so the final rename stays on one file
// system): ".<name>.partial-<pid>-<random>".
std::string partial_path_for(const std::string& dst) {
  const std::filesystem::path p = std::filesystem::u8path(dst);
  std::random_device random;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(random()));
  const std::string name = "." + p.filename().u8string() + ".partial-" + std::to_string(SDN_GETPID()) + "-" + suffix;
  return (p.parent_path() / std::filesystem::u8path(name)).u8string();
}

// Removes the partial file unless released.
struct PartialFile {
  std::string path;
  bool keep = false;
  ~PartialFile() {
    if (keep) return;
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

}  // namespace

ConvertResult convert_model(const std::string& src_path, const std::string& dst_path,
                                           const std::string& weight_type, const std::string& version,
                                           JobControl& job) {
  const WeightType* w = &find_weight_type(weight_type);
  check_destination(dst_path);
  job.throw_if_cancelled();

  Source src = open_source(src_path);
  {
    std::error_code ec;
    if (std::filesystem::equivalent(src_path, dst_path, ec))
      fail(ErrorCode::InvalidArgument, "the destination '" + dst_path + "' is the source file");
  }
  const TensorStore& store = src.store;
  const auto& tensors = store.tensors();

  // Declared before the writer, so the file is closed before it is removed.
  PartialFile partial{partial_path_for(dst_path)};
  GgufWriter out;
  out.add_string("general.architecture", "sdnode");
  if (!src.family.empty()) out.add_string("sdnode.family", src.family);
  out.add_string("sdnode.source", std::filesystem::path(src_path).filename().string());
  out.add_string("sdnode.version", version);
  out.add_u32("general.file_type", static_cast<uint32_t>(w->ftype));
  out.add_u32("general.quantization_version", GGML_QNT_VERSION);
  // Our own schema's keys (sdnode.attention_heads, sdnode.meta.*) keep their names, so what
  // reads them finds them in the converted file; any other key is kept under sdnode.meta.*.
  for (const auto& [key, value] : store.metadata()) {
    const bool ours = key.rfind("sdnode.", 0) == 0;
    if ((src.gguf || ours) && is_own_key(key)) continue;
    out.add_string(ours ? key : "sdnode.meta." + key, value);
  }

  std::vector<ggml_type> types;
  ConvertResult result;
  result.dropped = src.dropped;
  for (const TensorInfo& t : tensors) {
    const ggml_type type = target_type(t, w);
    out.add_tensor(t.name, gguf_ne(t, type), type);
    if (is_unfolded_kernel(t, type)) {
      out.add_string(kUnfoldedKernelKey + t.name, std::to_string(t.shape[0]) + "," + std::to_string(t.shape[1]) + "," +
                                                std::to_string(t.shape[2]) + "," + std::to_string(t.shape[3]));
    }
    types.push_back(type);
    result.tensors.push_back({t.name, tensor_type_name(t), type_name_upper(type)});
  }

  out.begin(partial.path);
  const int steps = static_cast<int>(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    job.throw_if_cancelled();
    convert_tensor(tensors[i], types[i], [&out](const void* p, size_t n) { out.write(p, n); }, job);
    job.report(static_cast<int>(i + 1), steps);
  }
  job.throw_if_cancelled();
  out.finish();
  // Again right before the rename: what is at dst may have changed during the conversion.
  check_destination(dst_path);
  std::error_code ec;
  std::filesystem::rename(partial.path, dst_path, ec);
  if (ec) fail(ErrorCode::FileAccess, "'" + dst_path + "': cannot move the converted file into place: " + ec.message());
  partial.keep = true;
  return result;
}

}  // namespace sdn
