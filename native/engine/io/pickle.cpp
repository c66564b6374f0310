// The non-executing pickle interpreter (see pickle.h). Validates every byte it uses: the pickle
// comes from an untrusted file.
#include "io/pickle.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "io/checked.h"

namespace sdn::pickle {

using namespace io_detail;

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

namespace {

enum class Glob : uint8_t { OrderedDict, RebuildTensorV2, RebuildTensor, RebuildParameter, StorageType, DTypeObject };

struct Global {
  const char* module;
  const char* name;
  Glob tag;
  DType dtype;
};

// The only globals a state dict needs. Everything else is refused where it is named.
const Global kGlobals[] = {
    {"collections", "OrderedDict", Glob::OrderedDict, DType::F32},
    {"torch._utils", "_rebuild_tensor_v2", Glob::RebuildTensorV2, DType::F32},
    {"torch._utils", "_rebuild_tensor", Glob::RebuildTensor, DType::F32},
    {"torch._utils", "_rebuild_parameter", Glob::RebuildParameter, DType::F32},
    {"torch", "FloatStorage", Glob::StorageType, DType::F32},
    {"torch", "HalfStorage", Glob::StorageType, DType::F16},
    {"torch", "BFloat16Storage", Glob::StorageType, DType::BF16},
    {"torch", "DoubleStorage", Glob::StorageType, DType::F64},
    {"torch", "LongStorage", Glob::StorageType, DType::I64},
    {"torch", "IntStorage", Glob::StorageType, DType::I32},
    {"torch", "ShortStorage", Glob::StorageType, DType::I16},
    {"torch", "CharStorage", Glob::StorageType, DType::I8},
    {"torch", "ByteStorage", Glob::StorageType, DType::U8},
    {"torch", "BoolStorage", Glob::StorageType, DType::Bool},
    {"torch", "float32", Glob::DTypeObject, DType::F32},
    {"torch", "float", Glob::DTypeObject, DType::F32},
    {"torch", "float16", Glob::DTypeObject, DType::F16},
    {"torch", "half", Glob::DTypeObject, DType::F16},
    {"torch", "bfloat16", Glob::DTypeObject, DType::BF16},
    {"torch", "float64", Glob::DTypeObject, DType::F64},
    {"torch", "double", Glob::DTypeObject, DType::F64},
    {"torch", "int64", Glob::DTypeObject, DType::I64},
    {"torch", "long", Glob::DTypeObject, DType::I64},
    {"torch", "int32", Glob::DTypeObject, DType::I32},
    {"torch", "int", Glob::DTypeObject, DType::I32},
    {"torch", "int16", Glob::DTypeObject, DType::I16},
    {"torch", "short", Glob::DTypeObject, DType::I16},
    {"torch", "int8", Glob::DTypeObject, DType::I8},
    {"torch", "uint8", Glob::DTypeObject, DType::U8},
    {"torch", "bool", Glob::DTypeObject, DType::Bool},
};

}  // namespace

// One pass over one pickle: the stack, marks and memo live here; the values go to arena_.
class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const PickleBudget& budget)
      : d_(data), n_(size), budget_(budget), max_depth_(budget.max_depth < 65535 ? budget.max_depth : 65535) {
    arena_.data_ = data;
  }

  Values run();

 private:
  // --- input
  const uint8_t* take(uint64_t k) {
    if (n_ - pos_ < k) bad("pickle is truncated (data.pkl ends inside an opcode or has no STOP)");
    const uint8_t* p = d_ + pos_;
    pos_ += k;
    return p;
  }
  uint8_t u8() { return *take(1); }

  // --- values
  void count_node() {
    if (++created_ > budget_.max_nodes)
      bad("pickle creates more than " + std::to_string(budget_.max_nodes) + " values");
  }
  uint32_t make(Kind k, int64_t i = 0, uint32_t ref = 0, uint8_t tag = 0) {
    count_node();
    Node n;
    n.kind = k, n.i = i, n.ref = ref, n.tag = tag;
    arena_.nodes_.push_back(n);
    return static_cast<uint32_t>(arena_.nodes_.size() - 1);
  }
  uint32_t make_span(Kind k, uint64_t len) {
    const uint64_t off = pos_;
    take(len);
    arena_.spans_.push_back({off, len});
    return make(k, 0, static_cast<uint32_t>(arena_.spans_.size() - 1));
  }
  uint32_t make_container(Kind k, std::vector<uint32_t> items) {
    uint32_t depth = 1;
    for (uint32_t v : items) {
      count_node();
      depth = std::max<uint32_t>(depth, arena_.nodes_[v].depth + 1u);
    }
    check_depth(depth);
    arena_.items_.push_back(std::move(items));
    const uint32_t id = make(k, 0, static_cast<uint32_t>(arena_.items_.size() - 1));
    arena_.nodes_[id].depth = static_cast<uint16_t>(depth);
    return id;
  }
  void add_items(uint32_t container, const uint32_t* v, size_t count) {
    Node& c = arena_.nodes_[container];
    uint32_t depth = c.depth;
    for (size_t i = 0; i < count; ++i) {
      count_node();
      depth = std::max<uint32_t>(depth, arena_.nodes_[v[i]].depth + 1u);
    }
    check_depth(depth);
    c.depth = static_cast<uint16_t>(depth);
    arena_.items_[c.ref].insert(arena_.items_[c.ref].end(), v, v + count);
  }
  void check_depth(uint32_t depth) const {
    if (depth > max_depth_) bad("pickle nests containers deeper than " + std::to_string(max_depth_) + " levels");
  }

  // --- stack; marks are positions in the one stack
  size_t frame_start() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(uint32_t v) {
    if (stack_.size() + marks_.size() >= budget_.max_stack)
      bad("pickle stack grows past " + std::to_string(budget_.max_stack) + " entries");
    stack_.push_back(v);
  }
  uint32_t pop() {
    if (stack_.size() <= frame_start()) bad("pickle stack underflow");
    const uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  uint32_t top() const {
    if (stack_.size() <= frame_start()) bad("pickle stack underflow");
    return stack_.back();
  }
  std::vector<uint32_t> pop_mark() {
    if (marks_.empty()) bad("pickle uses a mark that was never set");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<uint32_t> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  uint32_t expect(uint32_t v, Kind k, const char* what) const {
    if (arena_.nodes_[v].kind != k)
      bad(std::string(what) + " expects a " + kind_name(k) + ", got a " + kind_name(arena_.nodes_[v].kind));
    return v;
  }

  // --- memo
  void memo_put(uint64_t key) {
    const uint32_t v = top();
    auto it = memo_.find(key);
    if (it != memo_.end()) {
      it->second = v;
      return;
    }
    if (memo_.size() >= budget_.max_memo)
      bad("pickle memo grows past " + std::to_string(budget_.max_memo) + " entries");
    memo_.emplace(key, v);
  }
  void memo_get(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) bad("pickle reads memo entry " + std::to_string(key) + ", which was never stored");
    push(it->second);
  }

  uint32_t global(std::string_view module, std::string_view name) {
    for (const Global& g : kGlobals)
      if (module == g.module && name == g.name)
        return make(Kind::Global, static_cast<int64_t>(g.dtype), 0, static_cast<uint8_t>(g.tag));
    bad("pickle references a forbidden global " + shown(std::string(module) + "." + std::string(name)));
  }
  std::string_view line() {
    const uint8_t* start = d_ + pos_;
    const void* nl = std::memchr(start, '\n', n_ - pos_);
    if (!nl) bad("pickle is truncated (GLOBAL without a newline)");
    const size_t len = static_cast<const uint8_t*>(nl) - start;
    pos_ += len + 1;
    return std::string_view(reinterpret_cast<const char*>(start), len);
  }

  void reduce();
  void persistent_id();
  void build();

  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const PickleBudget& budget_;
  uint32_t max_depth_;
  uint64_t created_ = 0;
  Values arena_;  // what run() returns
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
};

void Unpickler::reduce() {
  const uint32_t args = expect(pop(), Kind::Tuple, "REDUCE");
  const Node fn = arena_.nodes_[pop()];  // copies: make() below may move the arena
  if (fn.kind != Kind::Global) bad(std::string("REDUCE calls a ") + kind_name(fn.kind));
  const std::vector<uint32_t> a = arena_.items_[arena_.nodes_[args].ref];
  switch (static_cast<Glob>(fn.tag)) {
    case Glob::OrderedDict:
      if (!a.empty()) bad("OrderedDict is rebuilt with arguments");
      push(make_container(Kind::Dict, {}));
      return;
    case Glob::RebuildTensorV2:
    case Glob::RebuildTensor: {
      const bool v2 = static_cast<Glob>(fn.tag) == Glob::RebuildTensorV2;
      if (v2 ? (a.size() != 6 && a.size() != 7) : a.size() != 4)
        bad(std::string(v2 ? "_rebuild_tensor_v2" : "_rebuild_tensor") + " gets " + std::to_string(a.size()) + " arguments");
      expect(a[0], Kind::Storage, "_rebuild_tensor");
      push(make(Kind::Tensor, 0, args));  // the arguments are checked once the tensor has a name
      return;
    }
    case Glob::RebuildParameter:
      if (a.size() != 3) bad("_rebuild_parameter gets " + std::to_string(a.size()) + " arguments");
      push(expect(a[0], Kind::Tensor, "_rebuild_parameter"));
      return;
    default: bad("pickle calls a torch storage type or dtype, which is not allowed");
  }
}

void Unpickler::persistent_id() {
  const uint32_t pid = pop();
  const Node& t = arena_.nodes_[pid];
  const std::vector<uint32_t>* a = t.kind == Kind::Tuple ? &arena_.items_[t.ref] : nullptr;
  if (!a || a->size() != 5 || arena_.nodes_[(*a)[0]].kind != Kind::Str || arena_.str(arena_.nodes_[(*a)[0]]) != "storage")
    bad("unsupported persistent id (expected a ('storage', type, key, location, numel) tuple)");
  const Node& type = arena_.nodes_[(*a)[1]];
  const Node& key = arena_.nodes_[(*a)[2]];
  const Node& numel = arena_.nodes_[(*a)[4]];
  if (type.kind != Kind::Global || static_cast<Glob>(type.tag) != Glob::StorageType)
    bad("persistent id names no torch storage type");
  if (key.kind != Kind::Str) bad("persistent id has a storage key that is not a string");
  if (numel.kind != Kind::Int || numel.i < 0) bad("persistent id has a bad storage size");
  arena_.storages_.push_back({static_cast<DType>(type.i), std::string(arena_.str(key)), static_cast<uint64_t>(numel.i)});
  push(make(Kind::Storage, 0, static_cast<uint32_t>(arena_.storages_.size() - 1)));
}

void Unpickler::build() {
  const Node& state = arena_.nodes_[pop()];
  const Node& obj = arena_.nodes_[top()];
  // torch pickles a state dict's `_metadata` attribute as BUILD state: harmless, ignored.
  const bool empty_tuple = state.kind == Kind::Tuple && arena_.items_[state.ref].empty();
  if (obj.kind == Kind::Dict && (state.kind == Kind::None || state.kind == Kind::Dict || empty_tuple)) return;
  bad(std::string("BUILD of a ") + kind_name(obj.kind) + " with a " + kind_name(state.kind) + " state is not supported");
}

Values Unpickler::run() {
  for (;;) {
    const size_t at = pos_;
    const uint8_t op = u8();
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t v = u8();
        if (v < 2 || v > 5) bad("unsupported pickle protocol " + std::to_string(v));
        break;
      }
      case 0x95: {  // FRAME: a buffering hint; only its length needs to make sense
        const uint64_t len = rd64(take(8));
        if (len > n_ - pos_) bad("pickle is truncated (frame runs past the end)");
        break;
      }
      case '.': {  // STOP
        arena_.root_ = pop();
        return std::move(arena_);
      }
      case '(':  // MARK
        if (stack_.size() + marks_.size() >= budget_.max_stack)
          bad("pickle stack grows past " + std::to_string(budget_.max_stack) + " entries");
        marks_.push_back(stack_.size());
        break;
      case '}': push(make_container(Kind::Dict, {})); break;
      case ']': push(make_container(Kind::List, {})); break;
      case ')': push(make_container(Kind::Tuple, {})); break;
      case 't': push(make_container(Kind::Tuple, pop_mark())); break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<uint32_t> v(op - 0x84);
        for (size_t k = v.size(); k-- > 0;) v[k] = pop();
        push(make_container(Kind::Tuple, std::move(v)));
        break;
      }
      case 'l': push(make_container(Kind::List, pop_mark())); break;
      case 'd': {
        std::vector<uint32_t> v = pop_mark();
        if (v.size() % 2) bad("DICT has an odd number of items");
        push(make_container(Kind::Dict, std::move(v)));
        break;
      }
      case 'a': {
        const uint32_t v = pop();
        add_items(expect(top(), Kind::List, "APPEND"), &v, 1);
        break;
      }
      case 'e': {
        const std::vector<uint32_t> v = pop_mark();
        add_items(expect(top(), Kind::List, "APPENDS"), v.data(), v.size());
        break;
      }
      case 's': {
        uint32_t kv[2];
        kv[1] = pop();
        kv[0] = pop();
        add_items(expect(top(), Kind::Dict, "SETITEM"), kv, 2);
        break;
      }
      case 'u': {
        const std::vector<uint32_t> v = pop_mark();
        if (v.size() % 2) bad("SETITEMS has an odd number of items");
        add_items(expect(top(), Kind::Dict, "SETITEMS"), v.data(), v.size());
        break;
      }
      case 'J': push(make(Kind::Int, static_cast<int32_t>(rd32(take(4))))); break;
      case 'K': push(make(Kind::Int, u8())); break;
      case 'M': push(make(Kind::Int, rd16(take(2)))); break;
      case 0x8a: {  // LONG1: little-endian two's complement
        const uint8_t len = u8();
        if (len > 8) bad("pickle integer is too large");
        const uint8_t* p = take(len);
        uint64_t v = 0;
        for (size_t k = 0; k < len; ++k) v |= static_cast<uint64_t>(p[k]) << (8 * k);
        if (len > 0 && len < 8 && (p[len - 1] & 0x80)) v |= ~uint64_t{0} << (8 * len);
        push(make(Kind::Int, static_cast<int64_t>(v)));
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        const uint8_t* p = take(8);
        uint64_t v = 0;
        for (size_t k = 0; k < 8; ++k) v = (v << 8) | p[k];
        push(make(Kind::Float, static_cast<int64_t>(v)));
        break;
      }
      case 'N': push(make(Kind::None)); break;
      case 0x88: push(make(Kind::Bool, 1)); break;
      case 0x89: push(make(Kind::Bool, 0)); break;
      case 'X': push(make_span(Kind::Str, rd32(take(4)))); break;
      case 0x8c: push(make_span(Kind::Str, u8())); break;
      case 0x8d: push(make_span(Kind::Str, rd64(take(8)))); break;
      case 'U': push(make_span(Kind::Str, u8())); break;
      case 'T': {
        const int32_t len = static_cast<int32_t>(rd32(take(4)));
        if (len < 0) bad("BINSTRING has a negative length");
        push(make_span(Kind::Str, static_cast<uint64_t>(len)));
        break;
      }
      case 'B': push(make_span(Kind::Bytes, rd32(take(4)))); break;
      case 'C': push(make_span(Kind::Bytes, u8())); break;
      case 'q': memo_put(u8()); break;
      case 'r': memo_put(rd32(take(4))); break;
      case 0x94: memo_put(memo_.size()); break;
      case 'h': memo_get(u8()); break;
      case 'j': memo_get(rd32(take(4))); break;
      case 'c': {
        const std::string_view module = line();
        const std::string_view name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const uint32_t name = pop(), module = pop();
        if (arena_.nodes_[name].kind != Kind::Str || arena_.nodes_[module].kind != Kind::Str)
          bad("STACK_GLOBAL expects two strings");
        push(global(arena_.str(arena_.nodes_[module]), arena_.str(arena_.nodes_[name])));
        break;
      }
      case 'R': reduce(); break;
      case 'b': build(); break;
      case 'Q': persistent_id(); break;
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args), allowed for OrderedDict only
        const uint32_t args = expect(pop(), Kind::Tuple, "NEWOBJ");
        const Node& cls = arena_.nodes_[pop()];
        if (cls.kind != Kind::Global || static_cast<Glob>(cls.tag) != Glob::OrderedDict ||
            !arena_.items_[arena_.nodes_[args].ref].empty())
          bad("NEWOBJ is only supported for OrderedDict");
        push(make_container(Kind::Dict, {}));
        break;
      }
      case '0':  // POP: like Python, an empty frame pops its mark instead
        if (stack_.size() > frame_start()) stack_.pop_back();
        else pop_mark();
        break;
      case '1': pop_mark(); break;
      case '2': push(top()); break;
      default: {
        static const char* hex = "0123456789abcdef";
        bad(std::string("unsupported pickle opcode 0x") + hex[op >> 4] + hex[op & 15] + " at offset " + std::to_string(at));
      }
    }
  }
}

Values read(const uint8_t* data, size_t size, const PickleBudget& budget) {
  return Unpickler(data, size, budget).run();
}

}  // namespace sdn::pickle
