// GGUF reader. The layout, all little-endian:
//
//   "GGUF"  u32 version  u64 tensor count  u64 metadata entry count
//   entries:  string key, u32 value type, value
//             (an array value is a u32 element type, a u64 length, then the elements)
//   tensors:  string name, u32 n_dims, i64 ne[n_dims] (innermost first), i32 ggml type,
//             u64 offset of its data, relative to the data section
//   padding up to a multiple of `general.alignment` (default 32), then the data section.
//
// A string is a u64 byte length followed by that many bytes, no terminator. Every count,
// length, shape and offset is checked against the file's size here, before anything is
// allocated from it and before ggml sees a type id, so that neither ggml's asserts nor a read
// past the mapping (SIGBUS) can be reached from a file.
#include "io/gguf.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "ggml.h"
#include "io/checked.h"
#include "io/utf8.h"

namespace sdn {
namespace {

using namespace io_detail;

// GGUF value types, numbered as the format numbers them.
enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
  kValueTypeCount = 13,
};

const char* value_type_name(uint32_t t) {
  static const char* const names[kValueTypeCount] = {"u8",  "i8",  "u16", "i16", "u32", "i32", "f32",
                                                     "bool", "str", "arr", "u64", "i64", "f64"};
  return t < kValueTypeCount ? names[t] : "?";
}

// Bytes of one value of a fixed-size type; 0 for strings and arrays.
size_t value_size(uint32_t t) {
  switch (t) {
    case kU8:
    case kI8:
    case kBool: return 1;
    case kU16:
    case kI16: return 2;
    case kU32:
    case kI32:
    case kF32: return 4;
    case kU64:
    case kI64:
    case kF64: return 8;
    default: return 0;
  }
}

constexpr uint32_t kDefaultAlignment = 32;

// The smallest encodings, to bound the header's counts by the file size: an entry is at least
// a key length, a 1-byte key, a value type and a 1-byte value; a tensor info at least a name
// length, a 1-byte name, n_dims, one dimension, a type and an offset.
constexpr uint64_t kMinEntryBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

constexpr size_t kMaxKeyBytes = 65535;  // the GGUF specification's limit

// Keys whose meaning the format fixes, with the one type each may have.
struct KnownKey {
  const char* key;
  uint32_t type;
};
constexpr KnownKey kKnownKeys[] = {
    {"general.alignment", kU32},
    {"general.architecture", kString},
    {"general.file_type", kU32},
    {"general.quantization_version", kU32},
};

// ggml type ids that once existed and are gone (Q4_2, Q4_3, the interleaved Q4_0_x_y and
// IQ4_NL_x_y layouts). ggml.h keeps their numbers commented out; their traits have block size 0.
constexpr int kRemovedTypes[] = {4, 5, 31, 32, 33, 36, 37, 38};

// Empty if `t` is a ggml type a file may hold, else why not. ggml is asked about the id only
// once it is known to be in range and not one of the removed ones (its lookups assert).
std::string ggml_type_problem(int64_t t) {
  if (t < 0 || t >= GGML_TYPE_COUNT)
    return "unknown ggml type id " + std::to_string(t) + " (known ids are 0.." + std::to_string(GGML_TYPE_COUNT - 1) + ")";
  for (int r : kRemovedTypes)
    if (t == r) return "ggml type id " + std::to_string(t) + ", a type ggml has removed";
  const ggml_type_traits* traits = ggml_get_type_traits(static_cast<ggml_type>(t));
  if (traits->blck_size <= 0 || traits->type_size == 0)
    return "ggml type id " + std::to_string(t) + " (" + traits->type_name + "), which has no block layout";
  return {};
}

// For messages about keys and names that failed validation: ASCII only, tamed, short.
std::string ascii_shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '?' : c;
  }
  if (s.size() > 80) out += "...";
  return out;
}

std::string hex_byte(unsigned v) {
  static const char digits[] = "0123456789abcdef";
  return std::string("0x") + digits[(v >> 4) & 15] + digits[v & 15];
}

// Shortest decimal text that reads back as the same value ("C" locale, as in Node).
std::string float_text(double v, int min_digits, int max_digits, bool is_f32) {
  char buf[40];
  for (int p = min_digits; p <= max_digits; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    const double back = std::strtod(buf, nullptr);
    if (is_f32 ? static_cast<float>(back) == static_cast<float>(v) : back == v) break;
  }
  return buf;  // NaN never compares equal: the last attempt ("nan") stands
}

class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& file) : data_(data), size_(size), file_(file) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }

  [[noreturn]] void error(const std::string& msg) const { bad("'" + file_ + "': " + msg); }

  const uint8_t* take(uint64_t n, const std::string& what) {
    if (n > remaining())
      error(what + " runs past the end of the file (" + std::to_string(n) + " bytes at offset " +
            std::to_string(pos_) + ", file is " + std::to_string(size_) + " bytes)");
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  uint32_t u32(const std::string& what) { return rd32(take(4, what)); }
  uint64_t u64(const std::string& what) { return rd64(take(8, what)); }

  std::string_view str(const std::string& what) {
    const uint64_t len = u64(what + " length");
    if (len > remaining())
      error(what + " has length " + std::to_string(len) + ", past the end of the file (" + std::to_string(remaining()) +
            " bytes left at offset " + std::to_string(pos_) + ")");
    return {reinterpret_cast<const char*>(take(len, what)), static_cast<size_t>(len)};
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& file_;
};

std::string scalar_text(uint32_t type, const uint8_t* p) {
  switch (type) {
    case kU8: return std::to_string(p[0]);
    case kI8: return std::to_string(static_cast<int8_t>(p[0]));
    case kU16: return std::to_string(rd16(p));
    case kI16: return std::to_string(static_cast<int16_t>(rd16(p)));
    case kU32: return std::to_string(rd32(p));
    case kI32: return std::to_string(static_cast<int32_t>(rd32(p)));
    case kU64: return std::to_string(rd64(p));
    case kI64: return std::to_string(static_cast<int64_t>(rd64(p)));
    case kF32: {
      const uint32_t b = rd32(p);
      float f;
      std::memcpy(&f, &b, sizeof f);
      return float_text(f, 6, 9, true);
    }
    case kF64: {
      const uint64_t b = rd64(p);
      double d;
      std::memcpy(&d, &b, sizeof d);
      return float_text(d, 15, 17, false);
    }
    case kBool: return p[0] ? "true" : "false";
    default: return "?";
  }
}

struct PendingTensor {
  std::string_view name;
  int type = 0;
  int n_dims = 0;
  int64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
  uint64_t nbytes = 0;
  uint64_t offset = 0;
};

DType dtype_of(int ggml_type) {
  switch (ggml_type) {
    case GGML_TYPE_F32: return DType::F32;
    case GGML_TYPE_F16: return DType::F16;
    case GGML_TYPE_BF16: return DType::BF16;
    case GGML_TYPE_F64: return DType::F64;
    case GGML_TYPE_I8: return DType::I8;
    case GGML_TYPE_I16: return DType::I16;
    case GGML_TYPE_I32: return DType::I32;
    case GGML_TYPE_I64: return DType::I64;
    default: return DType::Ggml;
  }
}

// An unfolded kernel's stored [OC, IC·KH·KW] matrix given its kernel shape from its metadata key
// (kUnfoldedKernelKey in io/gguf.h).
void fold_kernel_shape(const Cursor& c, const std::string& text, TensorInfo& info) {
  const std::string where = "tensor '" + info.name + "' (" + kUnfoldedKernelKey + info.name + " = '" + ascii_shown(text) + "')";
  std::vector<int64_t> shape;
  size_t i = 0;
  while (i <= text.size() && shape.size() < 5) {
    int64_t v = 0;
    size_t digits = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 10; ++i, ++digits) v = v * 10 + (text[i] - '0');
    if (digits == 0 || v == 0 || (i < text.size() && text[i] != ',')) c.error(where + ": not four positive integers");
    shape.push_back(v);
    ++i;
  }
  if (shape.size() != 4) c.error(where + ": not four positive integers");
  if (info.shape.size() != 2) c.error(where + ": the stored tensor is not 2-D");
  const int64_t row = info.shape[1];
  if (shape[0] != info.shape[0] || row % shape[1] != 0 || (row / shape[1]) % shape[2] != 0 ||
      row / shape[1] / shape[2] != shape[3])
    c.error(where + ": does not match the stored " + shape_text(info.shape));
  info.shape = shape;
  info.unfolded_row = row;
}

}  // namespace

TensorStore parse_gguf(std::shared_ptr<ByteSource> bytes, const std::string& name_for_errors) {
  if (!bytes) fail(ErrorCode::Internal, "parse_gguf: no bytes");
  Cursor c(bytes->data(), bytes->size(), name_for_errors);

  // Header.
  if (c.size() < 4 || std::memcmp(bytes->data(), "GGUF", 4) != 0) {
    std::string seen;
    for (size_t i = 0; i < 4 && i < c.size(); ++i) seen += (i ? " " : "") + hex_byte(bytes->data()[i]);
    c.error("not a GGUF file: it starts with " + (seen.empty() ? std::string("nothing (empty file)") : seen) +
            ", not the magic \"GGUF\"");
  }
  c.take(4, "magic");
  const uint32_t version = c.u32("GGUF version");
  if (version != 2 && version != 3) {
    if (version != 0 && (version & 0xffffu) == 0)
      c.error("GGUF version " + std::to_string(version) +
              " looks byte-swapped: this is a big-endian GGUF file, and only little-endian files are supported");
    if (version == 1) c.error("GGUF version 1 is obsolete: only versions 2 and 3 are supported");
    c.error("unsupported GGUF version " + std::to_string(version) + ": only versions 2 and 3 are supported");
  }
  const uint64_t n_tensors = c.u64("tensor count");
  const uint64_t n_entries = c.u64("metadata entry count");
  {
    const uint64_t room = c.remaining();
    if (n_tensors > room / kMinTensorInfoBytes)
      c.error("tensor count " + std::to_string(n_tensors) + " is impossible: the " + std::to_string(room) +
              " bytes after the header hold at most " + std::to_string(room / kMinTensorInfoBytes) + " tensor infos");
    const uint64_t room_left = room - n_tensors * kMinTensorInfoBytes;
    if (n_entries > room_left / kMinEntryBytes)
      c.error("metadata entry count " + std::to_string(n_entries) + " is impossible: the file has room for at most " +
              std::to_string(room_left / kMinEntryBytes) + " entries besides the tensor infos");
  }

  TensorStore store;
  uint32_t alignment = kDefaultAlignment;

  // Metadata entries.
  std::unordered_set<std::string_view> keys;
  for (uint64_t i = 0; i < n_entries; ++i) {
    const std::string_view key = c.str("key of metadata entry " + std::to_string(i));
    if (key.empty()) c.error("metadata entry " + std::to_string(i) + " has an empty key");
    if (key.size() > kMaxKeyBytes)
      c.error("metadata entry " + std::to_string(i) + " has a key of " + std::to_string(key.size()) +
              " bytes (at most " + std::to_string(kMaxKeyBytes) + ")");
    for (char ch : key) {
      const unsigned char u = static_cast<unsigned char>(ch);
      if (u < 0x20 || u >= 0x7f)
        c.error("metadata key '" + ascii_shown(key) + "' (entry " + std::to_string(i) + ") contains the byte " +
                hex_byte(u) + ": keys must be printable ASCII");
    }
    if (!keys.insert(key).second) c.error("duplicate metadata key '" + ascii_shown(key) + "'");

    const std::string where = "metadata '" + ascii_shown(key) + "'";
    const uint32_t type = c.u32(where + " value type");
    if (type >= kValueTypeCount) c.error(where + " has unknown value type " + std::to_string(type));
    for (const KnownKey& k : kKnownKeys)
      if (key == k.key && type != k.type)
        c.error(where + " has type " + value_type_name(type) + ", but the format requires " + value_type_name(k.type));

    if (type == kArray) {
      const uint32_t elem = c.u32(where + " array element type");
      if (elem == kArray) c.error(where + " is an array of arrays, which GGUF does not allow");
      if (elem >= kValueTypeCount) c.error(where + " is an array of unknown value type " + std::to_string(elem));
      const uint64_t n = c.u64(where + " array length");
      if (elem == kString) {
        if (n > c.remaining() / 8)
          c.error(where + " is an array of " + std::to_string(n) + " strings, more than the " +
                  std::to_string(c.remaining()) + " bytes left in the file can hold");
        const std::string what = "a string in " + where;
        for (uint64_t k = 0; k < n; ++k) c.str(what);
      } else {
        uint64_t nbytes = 0;
        if (!mul_ok(n, value_size(elem), &nbytes) || nbytes > c.remaining())
          c.error(where + " is an array of " + std::to_string(n) + " " + value_type_name(elem) +
                  " values, more than the " + std::to_string(c.remaining()) + " bytes left in the file can hold");
        const uint8_t* p = c.take(nbytes, where);
        if (elem == kBool)
          for (uint64_t k = 0; k < n; ++k)
            if (p[k] > 1) c.error(where + " holds the bool value " + std::to_string(p[k]) + " (only 0 and 1 are valid)");
      }
      store.set_metadata(std::string(key), "[" + std::to_string(n) + " x " + value_type_name(elem) + "]");
    } else if (type == kString) {
      store.set_metadata(std::string(key), std::string(c.str(where)));
    } else {
      const uint8_t* p = c.take(value_size(type), where);
      if (type == kBool && p[0] > 1)
        c.error(where + " has the bool value " + std::to_string(p[0]) + " (only 0 and 1 are valid)");
      if (key == "general.alignment") {
        alignment = rd32(p);
        if (alignment == 0 || (alignment & (alignment - 1)) != 0)
          c.error("general.alignment is " + std::to_string(alignment) + ", which is not a power of two");
      }
      store.set_metadata(std::string(key), scalar_text(type, p));
    }
  }

  // Tensor infos.
  std::vector<PendingTensor> infos;
  std::unordered_set<std::string_view> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    PendingTensor t;
    t.name = c.str("name of tensor " + std::to_string(i));
    if (t.name.empty()) c.error("tensor " + std::to_string(i) + " has an empty name");
    if (t.name.size() > kGgufMaxTensorName)
      c.error("tensor " + std::to_string(i) + " has a name of " + std::to_string(t.name.size()) + " bytes ('" +
              ascii_shown(t.name) + "'): at most " + std::to_string(kGgufMaxTensorName) + " are allowed");
    if (!printable_utf8(t.name))
      c.error("tensor " + std::to_string(i) + " has a name that is not printable UTF-8 ('" + ascii_shown(t.name) + "')");
    if (!names.insert(t.name).second) c.error("duplicate tensor name '" + std::string(t.name) + "'");

    const std::string where = "tensor '" + std::string(t.name) + "'";
    const uint32_t n_dims = c.u32(where + " dimension count");
    if (n_dims < 1 || n_dims > GGML_MAX_DIMS)
      c.error(where + " has " + std::to_string(n_dims) + " dimensions (1 to " + std::to_string(GGML_MAX_DIMS) +
              " are valid)");
    t.n_dims = static_cast<int>(n_dims);
    uint64_t numel = 1;
    for (int d = 0; d < t.n_dims; ++d) {
      const int64_t ne = static_cast<int64_t>(c.u64(where + " dimension " + std::to_string(d)));
      if (ne <= 0) c.error(where + " has dimension " + std::to_string(d) + " of size " + std::to_string(ne) + " (must be > 0)");
      if (!mul_ok(numel, static_cast<uint64_t>(ne), &numel) || numel > static_cast<uint64_t>(INT64_MAX))
        c.error(where + " has more elements than a 64-bit count can hold (dimension " + std::to_string(d) + " is " +
                std::to_string(ne) + ")");
      t.ne[d] = ne;
    }

    const int32_t type = static_cast<int32_t>(c.u32(where + " type"));
    const std::string problem = ggml_type_problem(type);
    if (!problem.empty()) c.error(where + " has " + problem);
    t.type = type;
    const ggml_type gt = static_cast<ggml_type>(type);
    const int64_t block = ggml_blck_size(gt);
    if (t.ne[0] % block != 0)
      c.error(where + " of type " + ggml_type_name(gt) + " has rows of " + std::to_string(t.ne[0]) +
              " elements, not a multiple of its block size " + std::to_string(block));
    if (!mul_ok(numel / static_cast<uint64_t>(block), ggml_type_size(gt), &t.nbytes))
      c.error(where + " is too large: its byte size overflows");
    t.offset = c.u64(where + " data offset");
    infos.push_back(t);
  }

  // Data section: starts at the aligned end of the header; each tensor lies inside the file,
  // aligned, after the previous one.
  uint64_t data_start = 0;
  if (!add_ok(c.pos(), alignment - 1, &data_start)) c.error("header end overflows");
  data_start -= data_start % alignment;
  uint64_t prev_end = 0;
  for (size_t i = 0; i < infos.size(); ++i) {
    const PendingTensor& t = infos[i];
    const std::string where = "tensor '" + std::string(t.name) + "'";
    if (t.offset % alignment != 0)
      c.error(where + " data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
              std::to_string(alignment));
    if (i > 0 && t.offset < prev_end) {
      const PendingTensor& p = infos[i - 1];
      if (t.offset <= p.offset)
        c.error(where + " data offset " + std::to_string(t.offset) + " does not come after that of the previous tensor '" +
                std::string(p.name) + "' (" + std::to_string(p.offset) + "): offsets must increase");
      c.error(where + " data at offset " + std::to_string(t.offset) + " overlaps tensor '" + std::string(p.name) +
              "' (offsets " + std::to_string(p.offset) + " to " + std::to_string(prev_end) + ")");
    }
    uint64_t begin = 0, end = 0;
    if (!add_ok(data_start, t.offset, &begin) || !add_ok(begin, t.nbytes, &end) || end > c.size())
      c.error(where + " data (" + std::to_string(t.nbytes) + " bytes at offset " + std::to_string(t.offset) +
              " of the data section, which starts at byte " + std::to_string(data_start) +
              ") runs past the end of the file (" + std::to_string(c.size()) + " bytes)");
    prev_end = t.offset + t.nbytes;  // cannot overflow: begin + nbytes did not
  }

  // Everything checked: fill the store with views into the bytes.
  const uint8_t* base = bytes->data();
  size_t unfolded = 0;
  for (const PendingTensor& t : infos) {
    TensorInfo info;
    info.name = std::string(t.name);
    info.dtype = dtype_of(t.type);
    if (info.dtype == DType::Ggml) info.ggml_type = t.type;
    for (int d = t.n_dims - 1; d >= 0; --d) info.shape.push_back(t.ne[d]);
    info.data = base + data_start + t.offset;
    info.nbytes = static_cast<size_t>(t.nbytes);
    auto kernel = store.metadata().find(kUnfoldedKernelKey + info.name);
    if (kernel != store.metadata().end()) {
      fold_kernel_shape(c, kernel->second, info);
      ++unfolded;
    }
    store.add(std::move(info));
  }
  size_t unfolded_keys = 0;
  for (auto it = store.metadata().lower_bound(kUnfoldedKernelKey);
       it != store.metadata().end() && it->first.rfind(kUnfoldedKernelKey, 0) == 0; ++it)
    ++unfolded_keys;
  if (unfolded_keys != unfolded) c.error("a " + std::string(kUnfoldedKernelKey) + "* key names no tensor of the file");
  store.keep_alive(std::move(bytes));
  return store;
}

TensorStore read_gguf(const std::string& path) { return parse_gguf(map_file(path), path); }

}  // namespace sdn
