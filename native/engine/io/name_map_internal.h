// Internal to the name maps (io/name_map*.cpp, and lora/lora_names.cpp for LoRA module names):
// the planner that collects mappings, and small name helpers.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/name_map.h"

namespace sdn::name_map_detail {

using Shape = std::vector<int64_t>;

inline const std::string& kUnet = kInternalUnet;
inline const std::string& kVae = kInternalVae;
inline const std::string& kText1 = kInternalText1;
inline const std::string& kText2 = kInternalText2;

inline bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
inline bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Names come from untrusted files: shown tamed and short in messages.
inline std::string shown(const std::string& s) {
  std::string out = "'";
  for (char c : s.substr(0, 160)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > 160) out += "...";
  return out + "'";
}

using sdn::shape_text;

inline std::vector<std::string> split_dots(const std::string& s) {
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

inline std::string join_from(const std::vector<std::string>& parts, size_t from) {
  std::string out;
  for (size_t i = from; i < parts.size(); ++i) out += (i > from ? "." : "") + parts[i];
  return out;
}

// A block index from a name: plain decimal digits, small. -1 when it is not one.
inline int parse_index(const std::string& s) {
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

// The per-convention tables (name_map_diffusers.cpp): `items` hold one component's names with
// their prefix removed. LDM names map onto themselves; diffusers names through the tables.
void map_unet(Planner& p, const std::vector<Item>& items);
void map_vae(Planner& p, const std::vector<Item>& items);

}  // namespace sdn::name_map_detail
