// libFuzzer target for the name planner: the input's first byte picks the component planned and
// whether EMA weights are asked for (one plan per input, so the fuzzer can spend its executions
// where the coverage is); the rest is a tensor index, one tensor per line as
// "<name>\t<dim>,<dim>,..." (scripts/generator/name-index.mjs writes seeds for every choice).
// The plan must either succeed — internal names
// unique, every source in the index, shapes holding the source's element count (RowSlice: a
// block of its rows) — and apply to a store of those tensors, or fail with ModelFormat. Any
// other outcome (another error, a foreign exception, a sanitizer report) is a finding.
//   bash scripts/fuzz.sh name_map
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/name_map.h"

namespace {

constexpr int64_t kMaxElements = 1 << 12;  // tensors get real (zeroed) data up to this size (kept small: zeroing dominated the run)

std::vector<sdn::TensorInfo> parse_index(const uint8_t* data, size_t size) {
  std::vector<sdn::TensorInfo> tensors;
  std::string text(reinterpret_cast<const char*>(data), size);
  size_t at = 0;
  while (at < text.size() && tensors.size() < 4096) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    const size_t tab = line.find('\t');
    sdn::TensorInfo t;
    t.name = line.substr(0, tab);
    t.dtype = sdn::DType::F16;
    if (tab != std::string::npos) {
      int64_t dim = 0;
      bool any = false;
      for (size_t i = tab + 1; i <= line.size(); ++i) {
        if (i == line.size() || line[i] == ',') {
          if (any && t.shape.size() < 6) t.shape.push_back(dim);
          dim = 0;
          any = false;
        } else if (line[i] >= '0' && line[i] <= '9' && dim < (int64_t(1) << 40)) {
          dim = dim * 10 + (line[i] - '0');
          any = true;
        }
      }
    }
    tensors.push_back(std::move(t));
  }
  return tensors;
}

int64_t numel_capped(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d != 0 && n > kMaxElements / d) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const sdn::Component components[] = {sdn::Component::Checkpoint, sdn::Component::Unet, sdn::Component::Vae,
                                       sdn::Component::TextEncoder, sdn::Component::TextEncoder2};
  const sdn::Component component = components[(data[0] >> 1) % 5];
  const bool ema = data[0] & 1;
  std::vector<sdn::TensorInfo> index = parse_index(data + 1, size - 1);
  std::map<std::string, const sdn::TensorInfo*> by_name;
  for (const auto& t : index) {
    if (!by_name.emplace(t.name, &t).second) return 0;  // a file never has two tensors of one name
  }
  try {
    sdn::NamePlan plan = sdn::plan_names(component, index, sdn::NameMapOptions{ema});
    std::set<std::string> seen;
    bool small = true;
    for (const auto& m : plan.tensors) {
      if (!seen.insert(m.name).second) std::abort();            // duplicate internal name
      auto source = by_name.find(m.source);
      if (source == by_name.end()) std::abort();                // a source not in the file
      if (numel_capped(source->second->shape) < 0) small = false;
    }
    if (small) {
      // A store of the index's tensors holding zeroed f16 data of their shapes.
      sdn::TensorStore in;
      try {
        for (const auto& t : index) {
          const int64_t n = numel_capped(t.shape);
          if (n < 0) continue;
          sdn::TensorInfo copy = t;
          copy.nbytes = static_cast<size_t>(n) * 2;
          uint8_t* bytes = in.own_buffer(copy.nbytes);
          std::memset(bytes, 0, copy.nbytes);
          copy.data = bytes;
          in.add(copy);
        }
      } catch (const sdn::Error& e) {
        if (e.code() != sdn::ErrorCode::ModelFormat) std::abort();
        return 0;  // the store itself refuses the index
      }
      sdn::TensorStore out;
      sdn::apply_name_plan(plan, in, out);
      for (const auto& m : plan.tensors) {
        const sdn::TensorInfo* t = out.find(m.name);
        if (!t || t->shape != m.shape) std::abort();
        if (t->nbytes != static_cast<size_t>(t->numel()) * 2) std::abort();
      }
    }
  } catch (const sdn::Error& e) {
    if (e.code() != sdn::ErrorCode::ModelFormat) std::abort();
  }
  return 0;
}
