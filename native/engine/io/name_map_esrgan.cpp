#include "io/name_map_esrgan.h"

#include <map>
#include <regex>

#include "core/error.h"

namespace sdn {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

[[noreturn]] void not_rrdbnet(const std::string& why) {
  fail(ErrorCode::ModelFormat, "not an ESRGAN (RRDBNet) file: " + why);
}

// The prefix the weights sit under: Real-ESRGAN's `params_ema.` (the EMA weights it ships)
// before `params.`, each maybe under `module.`; "" for a bare state dict.
std::string wrapper_prefix(const TensorStore& file) {
  for (const char* p : {"params_ema.", "params.", "module.", "params_ema.module.", "params.module."}) {
    if (file.find(std::string(p) + "conv_first.weight") || file.find(std::string(p) + "model.0.weight")) return p;
  }
  return "";
}

// BasicSR names are the internal ones; anything else in the file is not an RRDBNet's.
std::string basicsr_name(const std::string& name) {
  static const std::regex kKnown(
      R"((conv_first|conv_body|conv_up[1-9]|conv_hr|conv_last|body\.[0-9]{1,4}\.rdb[1-3]\.conv[1-5])\.(weight|bias))");
  if (!std::regex_match(name, kKnown)) not_rrdbnet("unexpected tensor '" + name + "' beside 'conv_first'");
  return name;
}

// The old ESRGAN nn.Sequential: the top-level convs after the trunk, in order, say which is
// which (see the header).
std::map<int, std::string> esrgan_tail_names(const std::vector<std::string>& names) {
  static const std::regex kTail(R"(model\.([0-9]{1,3})\.(weight|bias))");
  std::map<int, std::string> tail;
  std::smatch m;
  for (const std::string& n : names) {
    if (std::regex_match(n, m, kTail)) {
      const int i = std::stoi(m[1]);
      if (i >= 2) tail[i] = "";
    }
  }
  if (tail.size() < 2) not_rrdbnet("the ESRGAN layout needs an HR conv and an output conv after 'model.1'");
  int ups = static_cast<int>(tail.size()) - 2, k = 0;
  for (auto& [index, internal] : tail) {
    internal = k < ups ? "conv_up" + std::to_string(k + 1) : k == ups ? "conv_hr" : "conv_last";
    ++k;
  }
  return tail;
}

std::string esrgan_name(const std::string& name, const std::map<int, std::string>& tail, int body_conv) {
  static const std::regex kDense(R"(model\.1\.sub\.([0-9]{1,4})\.RDB([1-3])\.conv([1-5])\.0\.(weight|bias))");
  static const std::regex kTrunkConv(R"(model\.1\.sub\.([0-9]{1,4})\.(weight|bias))");
  static const std::regex kTop(R"(model\.([0-9]{1,3})\.(weight|bias))");
  std::smatch m;
  if (std::regex_match(name, m, kDense)) {
    return "body." + m[1].str() + ".rdb" + m[2].str() + ".conv" + m[3].str() + "." + m[4].str();
  }
  if (std::regex_match(name, m, kTrunkConv) && std::stoi(m[1]) == body_conv) return "conv_body." + m[2].str();
  if (std::regex_match(name, m, kTop)) {
    const int i = std::stoi(m[1]);
    if (i == 0) return "conv_first." + m[2].str();
    const auto it = tail.find(i);
    if (it != tail.end()) return it->second + "." + m[2].str();
  }
  not_rrdbnet("unexpected tensor '" + name + "' in the ESRGAN layout");
}

}  // namespace

EsrganNames map_esrgan_names(TensorStore&& file) {
  EsrganNames out;
  const std::string prefix = wrapper_prefix(file);
  std::vector<const TensorInfo*> tensors;
  std::vector<std::string> names;  // without the prefix
  for (const TensorInfo& t : file.tensors()) {
    if (!starts_with(t.name, prefix)) continue;  // e.g. `params` beside the preferred `params_ema`
    // Real-ESRGAN's .pth files hold both copies; a file with both wrappers keeps one.
    if (prefix.empty() && (starts_with(t.name, "params_ema.") || starts_with(t.name, "params."))) continue;
    tensors.push_back(&t);
    names.push_back(t.name.substr(prefix.size()));
  }
  const auto has = [&](const std::string& n) { return file.find(prefix + n) != nullptr; };
  std::vector<std::string> internal;
  if (has("conv_first.weight")) {
    out.convention = "basicsr";
    for (const std::string& n : names) internal.push_back(basicsr_name(n));
  } else if (has("model.0.weight")) {
    out.convention = "esrgan";
    const std::map<int, std::string> tail = esrgan_tail_names(names);
    // The trunk conv closes model.1.sub: the highest index, the only one without RDBs.
    int body_conv = -1;
    static const std::regex kTrunkConv(R"(model\.1\.sub\.([0-9]{1,4})\.weight)");
    std::smatch m;
    for (const std::string& n : names) {
      if (std::regex_match(n, m, kTrunkConv)) body_conv = std::max(body_conv, std::stoi(m[1]));
    }
    if (body_conv < 0) not_rrdbnet("no trunk conv 'model.1.sub.N.weight' in the ESRGAN layout");
    for (const std::string& n : names) internal.push_back(esrgan_name(n, tail, body_conv));
  } else {
    const std::string example = file.tensors().empty() ? "it holds no tensors" : "e.g. '" + file.tensors()[0].name + "'";
    not_rrdbnet("neither 'conv_first.weight' (BasicSR) nor 'model.0.weight' (ESRGAN) is in it (" + example + ")");
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    TensorInfo t = *tensors[i];
    t.name = internal[i];
    out.store.add(std::move(t));  // a duplicate internal name is refused as ModelFormat
  }
  out.store.absorb(std::move(file));
  return out;
}

}  // namespace sdn
