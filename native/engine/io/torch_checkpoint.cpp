// Reader for PyTorch's zip checkpoints. Two layers, both validating every byte they use:
//  - a zip index (stored entries only: torch never compresses), with ZIP64 support;
//  - a pickle interpreter that builds inert values in an arena. It knows a handful of
//    globals by name and turns them into tags; nothing is ever called or imported.
// All loops are iterative and bounded by PickleBudget, so hostile pickles fail with
// ModelFormat instead of exhausting memory or the C++ stack.
#include "io/torch_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace sdn {
namespace {

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::ModelFormat, msg); }

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) { return rd16(p) | (static_cast<uint32_t>(rd16(p + 2)) << 16); }
uint64_t rd64(const uint8_t* p) { return rd32(p) | (static_cast<uint64_t>(rd32(p + 4)) << 32); }

bool add_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a > std::numeric_limits<uint64_t>::max() - b) return false;
  *out = a + b;
  return true;
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

// For error messages: names from the file may hold anything, so show them tamed and short.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 120)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > 120) out += "...";
  return out;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

uint32_t crc32(const uint8_t* p, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

// =============================================================================================
// Zip index

struct ZipEntry {
  uint64_t offset = 0;  // of the entry's bytes in the file
  uint64_t size = 0;
  uint32_t crc = 0;
};

constexpr uint32_t kEocdSig = 0x06054b50, kZip64EocdSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;

// Entry names are never used as paths, but a name that would escape a folder marks a crafted
// archive, so it is refused outright.
void check_entry_name(const std::string& name) {
  bool ok = !name.empty() && name.find('\0') == std::string::npos && name[0] != '/' && name[0] != '\\' &&
            !(name.size() >= 2 && name[1] == ':');
  size_t start = 0;
  while (ok && start <= name.size()) {
    size_t end = name.find_first_of("/\\", start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0) ok = false;
    start = end + 1;
  }
  if (!ok) bad("zip entry name '" + shown(name) + "' is not a safe relative path");
}

class ZipIndex {
 public:
  ZipIndex(const uint8_t* data, uint64_t size) : d_(data), n_(size) { parse(); }
  const std::unordered_map<std::string, ZipEntry>& entries() const { return entries_; }

 private:
  void parse() {
    if (n_ < 22) bad("not a zip archive (file too short); only PyTorch's zip checkpoint format is supported");
    // The end record sits at the very end unless a comment (at most 65535 bytes) follows it.
    // Prefer the record whose comment ends exactly at the end of the file: the comment itself
    // may contain the signature.
    uint64_t eocd = UINT64_MAX;
    const uint64_t lowest = n_ > 65557 ? n_ - 65557 : 0;
    for (uint64_t pos = n_ - 22 + 1; pos-- > lowest;) {
      if (rd32(d_ + pos) != kEocdSig) continue;
      const uint64_t end = pos + 22 + rd16(d_ + pos + 20);
      if (end == n_) {
        eocd = pos;
        break;
      }
      if (end < n_ && eocd == UINT64_MAX) eocd = pos;  // trailing bytes after the record
    }
    if (eocd == UINT64_MAX) {
      bad(n_ > 0 && d_[0] == 0x80 ? "legacy (pre-zip) PyTorch checkpoint format is not supported; re-save it with torch.save"
                                  : "not a zip archive (no end of central directory record)");
    }
    const uint8_t* e = d_ + eocd;
    uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6), count_disk = rd16(e + 8), count = rd16(e + 10);
    uint64_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
    uint64_t cd_limit = eocd;  // the central directory must end before this

    if (eocd >= 20 && rd32(d_ + eocd - 20) == kZip64LocatorSig) {
      const uint8_t* loc = d_ + eocd - 20;
      const uint64_t z = rd64(loc + 8);
      if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1) bad("multi-disk zip archives are not supported");
      uint64_t z_end;
      if (!add_ok(z, 56, &z_end) || z_end > eocd - 20 || rd32(d_ + z) != kZip64EocdSig)
        bad("corrupt zip: bad ZIP64 end of central directory record");
      const uint8_t* r = d_ + z;
      disk = rd32(r + 16), cd_disk = rd32(r + 20), count_disk = rd64(r + 24), count = rd64(r + 32);
      cd_size = rd64(r + 40), cd_offset = rd64(r + 48);
      cd_limit = z;
    }
    if (disk != 0 || cd_disk != 0 || count_disk != count) bad("multi-disk zip archives are not supported");
    uint64_t cd_end;
    if (!add_ok(cd_offset, cd_size, &cd_end) || cd_end > cd_limit)
      bad("corrupt zip: central directory lies outside the file");
    if (count > cd_size / 46) bad("corrupt zip: central directory too small for its entry count");
    cd_offset_ = cd_offset;

    uint64_t p = cd_offset;
    for (uint64_t i = 0; i < count; ++i) p = parse_central(p, cd_end);
  }

  // Parses the central directory entry at p; returns the offset of the next one.
  uint64_t parse_central(uint64_t p, uint64_t cd_end) {
    if (cd_end - p < 46 || rd32(d_ + p) != kCentralSig) bad("corrupt zip: bad central directory entry");
    const uint8_t* c = d_ + p;
    const uint16_t flags = rd16(c + 8), method = rd16(c + 10);
    const uint32_t crc = rd32(c + 16);
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24), local = rd32(c + 42), disk = rd16(c + 34);
    const uint64_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
    const uint64_t var_len = name_len + extra_len + comment_len;
    if (cd_end - p - 46 < var_len) bad("corrupt zip: central directory entry runs past its end");
    std::string name(reinterpret_cast<const char*>(c + 46), name_len);
    check_entry_name(name);

    // ZIP64 extra field: 8-byte values for whichever 32-bit fields hold the 0xFFFFFFFF marker,
    // in this order.
    const uint8_t* x = c + 46 + name_len;
    for (uint64_t off = 0; off + 4 <= extra_len;) {
      const uint16_t id = rd16(x + off), len = rd16(x + off + 2);
      if (off + 4 + len > extra_len) bad("corrupt zip: bad extra field in entry '" + shown(name) + "'");
      if (id == 0x0001) {
        const uint8_t* f = x + off + 4;
        uint64_t used = 0;
        auto take = [&](uint64_t* v, uint64_t marker, uint64_t width) {
          if (*v != marker) return;
          if (used + width > len) bad("corrupt zip: short ZIP64 field in entry '" + shown(name) + "'");
          *v = width == 8 ? rd64(f + used) : rd32(f + used);
          used += width;
        };
        take(&usize, 0xffffffffu, 8);
        take(&csize, 0xffffffffu, 8);
        take(&local, 0xffffffffu, 8);
        take(&disk, 0xffffu, 4);
      }
      off += 4 + len;
    }
    if (disk != 0) bad("multi-disk zip archives are not supported");
    if (flags & 1) bad("encrypted zip entries are not supported (" + shown(name) + ")");
    if (method != 0) bad("compressed zip entries are not supported (" + shown(name) + ")");
    if (csize != usize) bad("corrupt zip: stored entry '" + shown(name) + "' has mismatched sizes");

    // Local header: same name and method; its data must lie before the central directory.
    uint64_t lh_end;
    if (!add_ok(local, 30, &lh_end) || lh_end > cd_offset_ || rd32(d_ + local) != kLocalSig)
      bad("corrupt zip: bad local header for '" + shown(name) + "'");
    const uint8_t* l = d_ + local;
    const uint16_t lflags = rd16(l + 6);
    const uint64_t lname = rd16(l + 26), lextra = rd16(l + 28);
    uint64_t data_start, data_end;
    if (lname != name_len || !add_ok(lh_end, lname + lextra, &data_start) || data_start > cd_offset_ ||
        std::memcmp(l + 30, name.data(), name_len) != 0 || rd16(l + 8) != method)
      bad("corrupt zip: local header does not match the central directory for '" + shown(name) + "'");
    // Without a data descriptor (flag bit 3) the local header repeats CRC and sizes.
    if (!(lflags & 8)) {
      const uint32_t lc = rd32(l + 18), lu = rd32(l + 22);
      if (rd32(l + 14) != crc || (lc != 0xffffffffu && lc != csize) || (lu != 0xffffffffu && lu != usize))
        bad("corrupt zip: local header does not match the central directory for '" + shown(name) + "'");
    }
    if (!add_ok(data_start, usize, &data_end) || data_end > cd_offset_)
      bad("corrupt zip: data of '" + shown(name) + "' lies outside the file");

    if (!entries_.emplace(std::move(name), ZipEntry{data_start, usize, crc}).second)
      bad("corrupt zip: duplicate entry '" + shown(std::string(reinterpret_cast<const char*>(c + 46), name_len)) + "'");
    return p + 46 + var_len;
  }

  const uint8_t* d_;
  uint64_t n_;
  uint64_t cd_offset_ = 0;
  std::unordered_map<std::string, ZipEntry> entries_;
};

// =============================================================================================
// Pickle values: an arena of small nodes referring to each other by index, so sharing (memo,
// DUP) costs nothing and freeing never recurses.

enum class Kind : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor };
enum class Glob : uint8_t { OrderedDict, RebuildTensorV2, RebuildTensor, RebuildParameter, StorageType, DTypeObject };

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

struct Node {
  int64_t i = 0;       // Int/Bool value, Float bits, Global's DType, Tensor's rebuild function
  uint32_t ref = 0;    // Str/Bytes: span; containers: item list; Storage: storage; Tensor: args tuple
  uint16_t depth = 0;  // container nesting below and including this node
  Kind kind = Kind::None;
  uint8_t tag = 0;     // Glob for globals
};

struct StorageRef {
  DType dtype;
  std::string key;
  uint64_t numel;
};

struct Span {
  uint64_t offset, size;
};

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

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const PickleBudget& budget)
      : d_(data), n_(size), budget_(budget), max_depth_(budget.max_depth < 65535 ? budget.max_depth : 65535) {}

  uint32_t run();  // returns the root value

  const Node& node(uint32_t i) const { return nodes_[i]; }
  size_t node_count() const { return nodes_.size(); }
  std::string_view str(const Node& s) const {
    const Span& sp = spans_[s.ref];
    return std::string_view(reinterpret_cast<const char*>(d_ + sp.offset), sp.size);
  }
  const std::vector<uint32_t>& items(const Node& c) const { return items_[c.ref]; }
  const StorageRef& storage(const Node& s) const { return storages_[s.ref]; }

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
    nodes_.push_back(n);
    return static_cast<uint32_t>(nodes_.size() - 1);
  }
  uint32_t make_span(Kind k, uint64_t len) {
    const uint64_t off = pos_;
    take(len);
    spans_.push_back({off, len});
    return make(k, 0, static_cast<uint32_t>(spans_.size() - 1));
  }
  uint32_t make_container(Kind k, std::vector<uint32_t> items) {
    uint32_t depth = 1;
    for (uint32_t v : items) {
      count_node();
      depth = std::max<uint32_t>(depth, nodes_[v].depth + 1u);
    }
    check_depth(depth);
    items_.push_back(std::move(items));
    const uint32_t id = make(k, 0, static_cast<uint32_t>(items_.size() - 1));
    nodes_[id].depth = static_cast<uint16_t>(depth);
    return id;
  }
  void add_items(uint32_t container, const uint32_t* v, size_t count) {
    Node& c = nodes_[container];
    uint32_t depth = c.depth;
    for (size_t i = 0; i < count; ++i) {
      count_node();
      depth = std::max<uint32_t>(depth, nodes_[v[i]].depth + 1u);
    }
    check_depth(depth);
    c.depth = static_cast<uint16_t>(depth);
    items_[c.ref].insert(items_[c.ref].end(), v, v + count);
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
    if (nodes_[v].kind != k) bad(std::string(what) + " expects a " + kind_name(k) + ", got a " + kind_name(nodes_[v].kind));
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
  std::vector<Node> nodes_;
  std::vector<Span> spans_;
  std::vector<std::vector<uint32_t>> items_;
  std::vector<StorageRef> storages_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
};

void Unpickler::reduce() {
  const uint32_t args = expect(pop(), Kind::Tuple, "REDUCE");
  const Node fn = nodes_[pop()];  // copies: make() below may move the arena
  if (fn.kind != Kind::Global) bad(std::string("REDUCE calls a ") + kind_name(fn.kind));
  const std::vector<uint32_t> a = items_[nodes_[args].ref];
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
  const Node& t = nodes_[pid];
  const std::vector<uint32_t>* a = t.kind == Kind::Tuple ? &items_[t.ref] : nullptr;
  if (!a || a->size() != 5 || nodes_[(*a)[0]].kind != Kind::Str || str(nodes_[(*a)[0]]) != "storage")
    bad("unsupported persistent id (expected a ('storage', type, key, location, numel) tuple)");
  const Node& type = nodes_[(*a)[1]];
  const Node& key = nodes_[(*a)[2]];
  const Node& numel = nodes_[(*a)[4]];
  if (type.kind != Kind::Global || static_cast<Glob>(type.tag) != Glob::StorageType)
    bad("persistent id names no torch storage type");
  if (key.kind != Kind::Str) bad("persistent id has a storage key that is not a string");
  if (numel.kind != Kind::Int || numel.i < 0) bad("persistent id has a bad storage size");
  storages_.push_back({static_cast<DType>(type.i), std::string(str(key)), static_cast<uint64_t>(numel.i)});
  push(make(Kind::Storage, 0, static_cast<uint32_t>(storages_.size() - 1)));
}

void Unpickler::build() {
  const Node& state = nodes_[pop()];
  const Node& obj = nodes_[top()];
  // torch pickles a state dict's `_metadata` attribute as BUILD state: harmless, ignored.
  const bool empty_tuple = state.kind == Kind::Tuple && items_[state.ref].empty();
  if (obj.kind == Kind::Dict && (state.kind == Kind::None || state.kind == Kind::Dict || empty_tuple)) return;
  bad(std::string("BUILD of a ") + kind_name(obj.kind) + " with a " + kind_name(state.kind) + " state is not supported");
}

uint32_t Unpickler::run() {
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
        return pop();
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
        if (nodes_[name].kind != Kind::Str || nodes_[module].kind != Kind::Str)
          bad("STACK_GLOBAL expects two strings");
        push(global(str(nodes_[module]), str(nodes_[name])));
        break;
      }
      case 'R': reduce(); break;
      case 'b': build(); break;
      case 'Q': persistent_id(); break;
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args), allowed for OrderedDict only
        const uint32_t args = expect(pop(), Kind::Tuple, "NEWOBJ");
        const Node& cls = nodes_[pop()];
        if (cls.kind != Kind::Global || static_cast<Glob>(cls.tag) != Glob::OrderedDict || !items_[nodes_[args].ref].empty())
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

// =============================================================================================
// From the pickle's values to tensors

struct Reader {
  const uint8_t* file;
  const ZipIndex& zip;
  const std::string& prefix;
  const Unpickler& up;
  const PickleBudget& budget;
  TensorStore& store;

  int64_t int_arg(uint32_t v, const std::string& tensor, const char* what) const {
    const Node& n = up.node(v);
    if (n.kind != Kind::Int || n.i < 0) bad("tensor '" + tensor + "' has a bad " + what);
    return n.i;
  }
  std::vector<int64_t> int_tuple(uint32_t v, const std::string& tensor, const char* what) const {
    const Node& n = up.node(v);
    if (n.kind != Kind::Tuple) bad("tensor '" + tensor + "' has a bad " + what);
    if (up.items(n).size() > 64) bad("tensor '" + tensor + "' has too many dimensions");
    std::vector<int64_t> out;
    for (uint32_t x : up.items(n)) out.push_back(int_arg(x, tensor, what));
    return out;
  }

  void add_tensor(const std::string& name, const Node& t) {
    const std::vector<uint32_t>& a = up.items(up.node(t.ref));
    const StorageRef& s = up.storage(up.node(a[0]));
    const int64_t offset = int_arg(a[1], name, "storage offset");
    const std::vector<int64_t> shape = int_tuple(a[2], name, "size");
    const std::vector<int64_t> stride = int_tuple(a[3], name, "stride");
    if (shape.size() != stride.size()) bad("tensor '" + name + "' has a size and stride of different lengths");

    const std::string entry_name = prefix + "/data/" + s.key;
    const auto it = zip.entries().find(entry_name);
    if (it == zip.entries().end())
      bad("tensor '" + name + "': its storage " + shown(entry_name) + " is missing from the checkpoint");
    const ZipEntry& e = it->second;
    const uint64_t es = dtype_size(s.dtype);
    uint64_t storage_bytes;
    if (e.size % es != 0)
      bad("tensor '" + name + "': storage " + shown(entry_name) + " holds " + std::to_string(e.size) +
          " bytes, not a whole number of " + dtype_name(s.dtype) + " elements");
    if (!mul_ok(s.numel, es, &storage_bytes) || storage_bytes > e.size)
      bad("tensor '" + name + "': storage " + shown(entry_name) + " holds " + std::to_string(e.size / es) +
          " elements but declares " + std::to_string(s.numel));

    // The view must fit: offset + sum((size - 1) * stride) < storage elements.
    uint64_t numel = 1, last = static_cast<uint64_t>(offset), tmp;
    for (size_t k = 0; k < shape.size(); ++k)
      if (!mul_ok(numel, static_cast<uint64_t>(shape[k]), &numel)) bad("tensor '" + name + "' is too large");
    uint64_t nbytes;
    if (!mul_ok(numel, es, &nbytes) || nbytes > SIZE_MAX) bad("tensor '" + name + "' is too large");
    if (numel > 0) {
      for (size_t k = 0; k < shape.size(); ++k)
        if (!mul_ok(static_cast<uint64_t>(shape[k] - 1), static_cast<uint64_t>(stride[k]), &tmp) || !add_ok(last, tmp, &last))
          bad("tensor '" + name + "' has a view that overflows");
      if (last >= s.numel)
        bad("tensor '" + name + "' needs " + std::to_string(last + 1) + " elements but its storage " + shown(entry_name) +
            " holds " + std::to_string(s.numel));
    }

    TensorInfo info;
    info.name = name;
    info.dtype = s.dtype;
    info.shape = shape;
    info.nbytes = static_cast<size_t>(nbytes);
    const uint8_t* base = file + e.offset;
    bool contiguous = true;
    for (size_t k = shape.size(), expected = 1; k-- > 0;) {
      if (shape[k] != 1 && static_cast<uint64_t>(stride[k]) != expected) contiguous = false;
      expected *= static_cast<size_t>(shape[k]);
    }
    if (numel == 0) {
      info.data = base;
    } else if (contiguous) {
      info.data = base + static_cast<size_t>(offset) * es;
    } else {
      uint8_t* dst = store.own_buffer(info.nbytes);
      copy_strided(dst, base + static_cast<size_t>(offset) * es, shape, stride, es);
      info.data = dst;
    }
    store.add(std::move(info));
  }

  // Gathers a strided view into dense row-major order, one innermost row at a time.
  static void copy_strided(uint8_t* dst, const uint8_t* src, const std::vector<int64_t>& shape,
                           const std::vector<int64_t>& stride, size_t es) {
    const size_t nd = shape.size();
    const size_t inner = static_cast<size_t>(shape[nd - 1]);
    const size_t inner_stride = static_cast<size_t>(stride[nd - 1]) * es;
    std::vector<int64_t> idx(nd, 0);
    for (;;) {
      size_t off = 0;
      for (size_t k = 0; k + 1 < nd; ++k) off += static_cast<size_t>(idx[k] * stride[k]) * es;
      const uint8_t* row = src + off;
      if (inner_stride == es) {
        std::memcpy(dst, row, inner * es);
        dst += inner * es;
      } else {
        for (size_t j = 0; j < inner; ++j, dst += es) std::memcpy(dst, row + j * inner_stride, es);
      }
      size_t k = nd - 1;
      for (;;) {
        if (k == 0) return;
        --k;
        if (++idx[k] < shape[k]) break;
        idx[k] = 0;
      }
    }
  }

  // Walks nested dicts without recursion. Each dict is entered once at most (a shared or cyclic
  // dict could otherwise make the walk exponential or endless), and depth is bounded.
  void walk(uint32_t root) {
    struct Frame {
      uint32_t dict;
      size_t next;
      std::string prefix;
    };
    std::vector<Frame> frames{{root, 0, ""}};
    std::vector<bool> seen(up.node_count(), false);  // dicts entered: a second visit is refused
    seen[root] = true;
    uint64_t visited = 0;
    while (!frames.empty()) {
      Frame& f = frames.back();
      const std::vector<uint32_t>& kv = up.items(up.node(f.dict));
      if (f.next >= kv.size()) {
        frames.pop_back();
        continue;
      }
      const Node& key = up.node(kv[f.next]);
      const Node& value = up.node(kv[f.next + 1]);
      f.next += 2;
      if (++visited > budget.max_nodes) bad("state dict has more than " + std::to_string(budget.max_nodes) + " entries");
      if (value.kind != Kind::Tensor && value.kind != Kind::Dict) continue;  // step counts, strings, lists...
      if (key.kind != Kind::Str) bad("state dict has a " + std::string(kind_name(key.kind)) + " key");
      const std::string_view k = up.str(key);
      if (!valid_utf8(k)) bad("state dict key is not valid UTF-8");
      std::string name = f.prefix + std::string(k);
      if (value.kind == Kind::Tensor) {
        add_tensor(name, value);
      } else {
        if (frames.size() >= budget.max_depth) bad("state dict nests dicts deeper than " + std::to_string(budget.max_depth) + " levels");
        if (seen[kv[f.next - 1]]) bad("state dict reaches the same dict twice (at '" + shown(name) + "')");
        seen[kv[f.next - 1]] = true;
        frames.push_back({kv[f.next - 1], 0, name + "."});  // f may dangle after push_back
      }
    }
  }
};

std::string find_prefix(const ZipIndex& zip) {
  std::string prefix;
  int found = 0;
  for (const auto& [name, entry] : zip.entries()) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && slash > 0 && name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (++found > 1) bad("checkpoint has more than one data.pkl");
      prefix = name.substr(0, slash);
    }
  }
  if (!found) bad("not a PyTorch checkpoint: the zip has no <name>/data.pkl");
  return prefix;
}

TensorStore read(const std::string& path, const PickleBudget& budget) {
  std::shared_ptr<ByteSource> src = map_file(path);
  const uint8_t* file = src->data();
  const ZipIndex zip(file, src->size());
  const std::string prefix = find_prefix(zip);

  const auto bo = zip.entries().find(prefix + "/byteorder");
  if (bo != zip.entries().end()) {
    const std::string order(reinterpret_cast<const char*>(file + bo->second.offset),
                            std::min<uint64_t>(bo->second.size, 16));
    if (order != "little") bad("checkpoint byte order is '" + shown(order) + "'; only little-endian is supported");
  }

  const ZipEntry& pkl = zip.entries().at(prefix + "/data.pkl");
  if (pkl.size > budget.max_pickle_bytes)
    bad("data.pkl is " + std::to_string(pkl.size) + " bytes, over the limit of " + std::to_string(budget.max_pickle_bytes));
  if (crc32(file + pkl.offset, pkl.size) != pkl.crc) bad("data.pkl is corrupt (CRC mismatch)");

  Unpickler up(file + pkl.offset, static_cast<size_t>(pkl.size), budget);
  uint32_t root = up.run();
  if (up.node(root).kind != Kind::Dict)
    bad(std::string("checkpoint holds a ") + kind_name(up.node(root).kind) + ", not a state dict");
  // Training checkpoints (SD .ckpt) wrap the weights: {"state_dict": {...}, "global_step": ...}.
  const std::vector<uint32_t>& kv = up.items(up.node(root));
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    const Node& k = up.node(kv[i]);
    if (k.kind == Kind::Str && up.str(k) == "state_dict" && up.node(kv[i + 1]).kind == Kind::Dict) {
      root = kv[i + 1];
      break;
    }
  }

  TensorStore store;
  store.keep_alive(src);
  Reader{file, zip, prefix, up, budget, store}.walk(root);
  return store;
}

}  // namespace

TensorStore read_torch_checkpoint(const std::string& path, const PickleBudget& budget) {
  try {
    return read(path, budget);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::ModelFormat) throw;
    fail(ErrorCode::ModelFormat, "'" + path + "': " + e.what());
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::Resource, "out of memory reading '" + path + "'");
  }
}

}  // namespace sdn
