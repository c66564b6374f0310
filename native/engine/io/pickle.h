// A pickle interpreter that never executes anything: it builds inert values, knows the handful
// of globals a torch state dict needs by name (as tags), and refuses every other global. All
// loops are iterative and bounded by PickleBudget, so hostile pickles fail with ModelFormat
// instead of exhausting memory or the C++ stack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "io/tensor_store.h"
#include "io/torch_checkpoint.h"  // PickleBudget

namespace sdn::pickle {

enum class Kind : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor };

const char* kind_name(Kind k);

// Values live in an arena and refer to each other by index, so sharing (memo, DUP) costs
// nothing and freeing never recurses.
struct Node {
  int64_t i = 0;       // Int/Bool value, Float bits, Global's DType, Tensor's rebuild function
  uint32_t ref = 0;    // Str/Bytes: span; containers: item list; Storage: storage; Tensor: args tuple
  uint16_t depth = 0;  // container nesting below and including this node
  Kind kind = Kind::None;
  uint8_t tag = 0;     // which allow-listed global, for globals
};

// A torch storage named by a persistent id: the checkpoint's entry `data/<key>`.
struct StorageRef {
  DType dtype;
  std::string key;
  uint64_t numel;
};

class Values {
 public:
  uint32_t root() const { return root_; }
  const Node& node(uint32_t i) const { return nodes_[i]; }
  size_t node_count() const { return nodes_.size(); }
  // Str and Bytes: the bytes, inside the pickle's buffer.
  std::string_view str(const Node& s) const {
    const Span& sp = spans_[s.ref];
    return std::string_view(reinterpret_cast<const char*>(data_ + sp.offset), sp.size);
  }
  // Containers: dicts as key, value, key, value...
  const std::vector<uint32_t>& items(const Node& c) const { return items_[c.ref]; }
  const StorageRef& storage(const Node& s) const { return storages_[s.ref]; }

 private:
  friend class Unpickler;
  struct Span {
    uint64_t offset, size;
  };

  const uint8_t* data_ = nullptr;
  uint32_t root_ = 0;
  std::vector<Node> nodes_;
  std::vector<Span> spans_;
  std::vector<std::vector<uint32_t>> items_;
  std::vector<StorageRef> storages_;
};

// Interprets `data` up to its STOP. The values refer into `data`, which must outlive them.
// Throws ModelFormat.
Values read(const uint8_t* data, size_t size, const PickleBudget& budget);

}  // namespace sdn::pickle
