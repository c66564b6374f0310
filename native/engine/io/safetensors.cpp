// Reader for safetensors files. The header is untrusted JSON: a strict parser of our own reads
// it straight into the few fields the format defines (no document tree, so memory stays
// proportional to what is kept), then the byte ranges are checked to tile the data section
// exactly before any pointer into the file is formed.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "io/checked.h"
#include "io/utf8.h"

namespace sdn {
namespace {

using namespace io_detail;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr uint64_t kMaxInteger = uint64_t{1} << 53;  // exact in a double, so in JS too
constexpr size_t kMaxRank = 8;
constexpr int kMaxDepth = 64;  // nesting of JSON containers, the top-level object being 1

std::string quoted(std::string_view s) { return "'" + shown(s) + "'"; }

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

bool parse_dtype(std::string_view s, DType* out) {
  static const struct {
    const char* name;
    DType dtype;
  } kDtypes[] = {
      {"F64", DType::F64},         {"F32", DType::F32},         {"F16", DType::F16}, {"BF16", DType::BF16},
      {"F8_E4M3", DType::F8_E4M3}, {"F8_E5M2", DType::F8_E5M2}, {"I64", DType::I64}, {"I32", DType::I32},
      {"I16", DType::I16},         {"I8", DType::I8},           {"U8", DType::U8},   {"BOOL", DType::Bool},
  };
  for (const auto& d : kDtypes)
    if (s == d.name) {
      *out = d.dtype;
      return true;
    }
  return false;
}

// One tensor as the header describes it.
struct Entry {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// A cursor over the header text. Syntax errors name the byte offset in the header; schema
// errors name the tensor or field.
class Parser {
 public:
  Parser(const char* p, size_t n) : p_(p), n_(n) {}

  void parse(std::vector<Entry>& entries, TensorStore& store) {
    ws();
    if (i_ == n_) bad("header is empty");
    if (p_[i_] != '{') {
      skip_value(1);  // a syntax error is reported as such
      bad(std::string("header holds ") + kind_name(first_) + ", not a JSON object");
    }
    ++i_;
    std::unordered_set<std::string> keys;
    if (!close('}')) {
      do {
        std::string key = key_string();
        if (!keys.insert(key).second) {
          if (key == "__metadata__") bad("header has '__metadata__' twice");
          bad("tensor " + quoted(key) + " appears twice in the header");
        }
        if (key == "__metadata__") {
          metadata(store);
        } else {
          entries.emplace_back();
          entries.back().name = std::move(key);
          tensor(entries.back());
        }
      } while (next_member('}'));
    }
    ws();
    if (i_ != n_) syntax("unexpected text after the top-level object");
  }

 private:
  const char* p_;
  size_t n_;
  size_t i_ = 0;
  char first_ = 0;  // first character of the last value skip_value() read

  [[noreturn]] void syntax(const std::string& what) const {
    bad("header is not valid JSON: " + what + " at byte " + std::to_string(i_) + (i_ >= n_ ? " (its end)" : ""));
  }

  static const char* kind_name(char c) {
    switch (c) {
      case '{': return "an object";
      case '[': return "an array";
      case '"': return "a string";
      case 't':
      case 'f': return "a boolean";
      case 'n': return "null";
      default: return "a number";
    }
  }

  void ws() {
    while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\t' || p_[i_] == '\n' || p_[i_] == '\r')) ++i_;
  }
  // The next non-space character, or 0 at the end.
  char peek() {
    ws();
    return i_ < n_ ? p_[i_] : '\0';
  }
  void expect(char c, const char* what) {
    if (peek() != c) syntax(std::string("expected ") + what);
    ++i_;
  }
  // After an opening bracket: consumes `c` if the container is empty.
  bool close(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }
  // After a member or element: true if a ',' follows, false if the closing `c` does.
  bool next_member(char c) {
    const char k = peek();
    if (k == ',') {
      ++i_;
      return true;
    }
    if (k == c) {
      ++i_;
      return false;
    }
    syntax(c == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
  }

  std::string key_string() {
    if (peek() != '"') syntax("expected a string key");
    std::string key;
    string(&key);
    expect(':', "':' after a key");
    return key;
  }

  unsigned hex4() {
    if (n_ - i_ < 4) syntax("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = p_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else syntax("bad hex digit in a \\u escape");
    }
    return v;
  }

  // Reads a string at the cursor ('"'), decoding it into *out unless out is null. The whole
  // header was checked to be UTF-8 already, so raw bytes pass through as they are.
  void string(std::string* out) {
    ++i_;  // the opening quote
    for (;;) {
      if (i_ >= n_) syntax("unterminated string");
      const unsigned char c = static_cast<unsigned char>(p_[i_]);
      if (c == '"') {
        ++i_;
        return;
      }
      if (c < 0x20) syntax("control character in a string");
      if (c != '\\') {
        // Copy the run of plain bytes in one go.
        size_t j = i_ + 1;
        while (j < n_ && p_[j] != '"' && p_[j] != '\\' && static_cast<unsigned char>(p_[j]) >= 0x20) ++j;
        if (out) out->append(p_ + i_, j - i_);
        i_ = j;
        continue;
      }
      if (++i_ >= n_) syntax("unterminated string");
      const char e = p_[i_++];
      char plain = 0;
      switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) syntax("lone low surrogate in a \\u escape");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (n_ - i_ < 2 || p_[i_] != '\\' || p_[i_ + 1] != 'u') syntax("lone high surrogate in a \\u escape");
            i_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) syntax("high surrogate not followed by a low one in a \\u escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          if (cp == 0) syntax("escaped NUL character (\\u0000) in a string");
          if (out) append_utf8(*out, cp);
          continue;
        }
        default: syntax("bad escape in a string");
      }
      if (out) *out += plain;
    }
  }

  void digits() {
    if (i_ >= n_ || p_[i_] < '0' || p_[i_] > '9') syntax("expected a digit");
    while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
  }

  // Any JSON number; returns true if it was written as a non-negative integer.
  bool number() {
    bool integer = true;
    if (p_[i_] == '-') {
      integer = false;
      ++i_;
    }
    if (i_ < n_ && p_[i_] == '0') {
      ++i_;
      if (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') syntax("leading zero in a number");
    } else {
      digits();
    }
    if (i_ < n_ && p_[i_] == '.') {
      integer = false;
      ++i_;
      digits();
    }
    if (i_ < n_ && (p_[i_] == 'e' || p_[i_] == 'E')) {
      integer = false;
      ++i_;
      if (i_ < n_ && (p_[i_] == '+' || p_[i_] == '-')) ++i_;
      digits();
    }
    return integer;
  }

  void literal(const char* word) {
    const size_t len = std::strlen(word);
    if (n_ - i_ < len || std::memcmp(p_ + i_, word, len) != 0) syntax("unexpected character");
    i_ += len;
  }

  // Validates and skips one value of any type; `depth` is the nesting it sits at.
  void skip_value(int depth) {
    const char c = peek();
    first_ = c;
    switch (c) {
      case '{':
      case '[': {
        if (depth >= kMaxDepth) syntax("containers nested deeper than " + std::to_string(kMaxDepth) + " levels");
        ++i_;
        const char end = c == '{' ? '}' : ']';
        if (close(end)) break;
        do {
          if (c == '{') {
            if (peek() != '"') syntax("expected a string key");
            string(nullptr);
            expect(':', "':' after a key");
          }
          skip_value(depth + 1);
        } while (next_member(end));
        break;
      }
      case '"': string(nullptr); break;
      case 't': literal("true"); break;
      case 'f': literal("false"); break;
      case 'n': literal("null"); break;
      case '\0':
        if (i_ == n_) syntax("unexpected end of header");
        syntax("unexpected character");
      default:
        if (c == '-' || (c >= '0' && c <= '9')) {
          number();
          break;
        }
        syntax("unexpected character");
    }
    first_ = c;
  }

  // A non-negative integer up to 2^53 written without fraction or exponent, as the reference
  // implementation reads usize fields. `what` describes the field for errors.
  template <typename What>
  uint64_t integer(int depth, const What& what) {
    const char c = peek();
    if (c != '-' && (c < '0' || c > '9')) {
      skip_value(depth);
      bad(what() + " is " + kind_name(first_) + ", not a non-negative integer");
    }
    const size_t start = i_;
    if (!number()) {
      const std::string text(p_ + start, std::min<size_t>(i_ - start, 40));
      bad(what() + " is " + text + (c == '-' ? ", a negative number" : ", not an integer"));
    }
    uint64_t v = 0;
    for (size_t k = start; k < i_; ++k) {
      v = v * 10 + static_cast<uint64_t>(p_[k] - '0');
      if (v > kMaxInteger) bad(what() + " is larger than 2^53");
    }
    return v;
  }

  void metadata(TensorStore& store) {
    const char c = peek();
    if (c == 'n') {  // "__metadata__": null means none, as in the reference implementation
      literal("null");
      return;
    }
    if (c != '{') {
      skip_value(2);
      bad(std::string("'__metadata__' is ") + kind_name(first_) + ", not an object of strings");
    }
    ++i_;
    if (close('}')) return;
    std::unordered_set<std::string> keys;
    do {
      std::string key = key_string();
      if (peek() != '"') {
        skip_value(3);
        bad("'__metadata__' entry " + quoted(key) + " is " + kind_name(first_) + ", not a string");
      }
      std::string value;
      string(&value);
      if (!keys.insert(key).second) bad("'__metadata__' has the key " + quoted(key) + " twice");
      store.set_metadata(key, value);
    } while (next_member('}'));
  }

  void tensor(Entry& t) {
    const auto who = [&t] { return "tensor " + quoted(t.name); };
    if (peek() != '{') {
      skip_value(2);
      bad(who() + ": its entry is " + kind_name(first_) + ", not an object");
    }
    ++i_;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    if (!close('}')) {
      do {
        const std::string field = key_string();
        bool* seen = field == "dtype" ? &has_dtype
                     : field == "shape" ? &has_shape
                     : field == "data_offsets" ? &has_offsets
                                               : nullptr;
        if (!seen) {  // unknown fields are ignored, as serde does for the reference
          skip_value(3);
          continue;
        }
        if (*seen) bad(who() + " has the field '" + field + "' twice");
        *seen = true;
        if (seen == &has_dtype) {
          if (peek() != '"') {
            skip_value(3);
            bad(who() + ": dtype is " + kind_name(first_) + ", not a string");
          }
          std::string name;
          string(&name);
          if (!parse_dtype(name, &t.dtype)) bad(who() + " has unsupported dtype " + quoted(name));
        } else if (seen == &has_shape) {
          shape(t);
        } else {
          offsets(t);
        }
      } while (next_member('}'));
    }
    if (!has_dtype) bad(who() + " has no 'dtype' field");
    if (!has_shape) bad(who() + " has no 'shape' field");
    if (!has_offsets) bad(who() + " has no 'data_offsets' field");
  }

  void shape(Entry& t) {
    if (peek() != '[') {
      skip_value(3);
      bad("tensor " + quoted(t.name) + ": shape is " + kind_name(first_) + ", not an array");
    }
    ++i_;
    if (close(']')) return;
    do {
      if (t.shape.size() == kMaxRank)
        bad("tensor " + quoted(t.name) + " has more than " + std::to_string(kMaxRank) + " dimensions");
      const size_t k = t.shape.size();
      t.shape.push_back(static_cast<int64_t>(
          integer(4, [&] { return "tensor " + quoted(t.name) + ": shape[" + std::to_string(k) + "]"; })));
    } while (next_member(']'));
  }

  void offsets(Entry& t) {
    const auto form = [&t] { return "tensor " + quoted(t.name) + ": data_offsets must be [begin, end]"; };
    if (peek() != '[') {
      skip_value(3);
      bad(form() + ", not " + kind_name(first_));
    }
    ++i_;
    if (close(']')) bad(form() + ", not an empty array");
    t.begin = integer(4, [&] { return "tensor " + quoted(t.name) + ": data_offsets[0]"; });
    if (!next_member(']')) bad(form() + ", not one number");
    t.end = integer(4, [&] { return "tensor " + quoted(t.name) + ": data_offsets[1]"; });
    if (next_member(']')) bad(form() + ", not more than two numbers");
  }
};

std::string range_text(const Entry& e) {
  return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
}

TensorStore parse(std::shared_ptr<ByteSource> src) {
  const uint8_t* base = src->data();
  const uint64_t file_size = src->size();
  if (file_size < 8) bad("file is " + std::to_string(file_size) + " bytes, too short for a safetensors header");
  const uint64_t n = rd64(base);
  if (n > kMaxHeaderBytes)
    bad("header length " + std::to_string(n) + " is over the limit of " + std::to_string(kMaxHeaderBytes) + " bytes");
  uint64_t header_end;
  if (!add_ok(8, n, &header_end) || header_end > file_size)
    bad("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(file_size) + " bytes)");

  const uint8_t* header = base + 8;
  const size_t header_len = static_cast<size_t>(n);
  if (const void* nul = std::memchr(header, 0, header_len))
    bad("header has a NUL byte at byte " + std::to_string(static_cast<const uint8_t*>(nul) - header));
  const size_t utf8_at = utf8_error_at(header, header_len);
  if (utf8_at != header_len) bad("header is not valid UTF-8 at byte " + std::to_string(utf8_at));

  TensorStore store;
  std::vector<Entry> entries;
  Parser(reinterpret_cast<const char*>(header), header_len).parse(entries, store);

  // Byte sizes from shapes, with overflow checks.
  std::vector<uint64_t> nbytes(entries.size());
  for (size_t k = 0; k < entries.size(); ++k) {
    const Entry& e = entries[k];
    uint64_t count = 1;
    for (int64_t d : e.shape)
      if (!mul_ok(count, static_cast<uint64_t>(d), &count))
        bad("tensor " + quoted(e.name) + ": shape " + shape_text(e.shape) + " has too many elements (overflow)");
    if (!mul_ok(count, dtype_size(e.dtype), &nbytes[k]) || nbytes[k] > SIZE_MAX)
      bad("tensor " + quoted(e.name) + ": shape " + shape_text(e.shape) + " of " + dtype_name(e.dtype) +
          " is too many bytes (overflow)");
  }

  // In file order the ranges must tile the data section: no gap, no overlap, nothing after.
  std::vector<size_t> order(entries.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Entry& x = entries[a];
    const Entry& y = entries[b];
    if (x.begin != y.begin) return x.begin < y.begin;
    if (x.end != y.end) return x.end < y.end;
    return x.name < y.name;
  });
  const uint64_t data_len = file_size - header_end;
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (size_t k : order) {
    const Entry& e = entries[k];
    const std::string who = "tensor " + quoted(e.name);
    if (e.end < e.begin) bad(who + ": data_offsets " + range_text(e) + " end before they begin");
    if (e.begin > pos)
      bad(who + ": data_offsets " + range_text(e) + " leave a gap after byte " + std::to_string(pos) +
          (prev ? " where tensor " + quoted(prev->name) + " ends" : std::string(" (the first tensor must start at 0)")));
    if (e.begin < pos)
      bad(who + ": data_offsets " + range_text(e) + " overlap tensor " + quoted(prev->name) + ", which ends at " +
          std::to_string(pos));
    if (e.end - e.begin != nbytes[k])
      bad(who + ": shape " + shape_text(e.shape) + " of " + dtype_name(e.dtype) + " is " + std::to_string(nbytes[k]) +
          " bytes, but data_offsets " + range_text(e) + " span " + std::to_string(e.end - e.begin));
    pos = e.end;
    prev = &e;
  }
  if (pos < data_len)
    bad("data section is " + std::to_string(data_len) + " bytes but the tensors end at byte " + std::to_string(pos) +
        " (trailing bytes)");
  if (pos > data_len)
    bad("tensors need " + std::to_string(pos) + " bytes of data but the file holds only " + std::to_string(data_len) +
        " after the header (truncated)");

  const uint8_t* data = base + header_end;
  for (size_t k : order) {
    Entry& e = entries[k];
    TensorInfo info;
    info.name = std::move(e.name);
    info.dtype = e.dtype;
    info.shape = std::move(e.shape);
    info.data = data + e.begin;
    info.nbytes = static_cast<size_t>(nbytes[k]);
    store.add(std::move(info));
  }
  store.keep_alive(std::move(src));
  return store;
}

}  // namespace

TensorStore parse_safetensors(std::shared_ptr<ByteSource> bytes, const std::string& name_for_errors) {
  try {
    return parse(std::move(bytes));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::ModelFormat) throw;
    fail(ErrorCode::ModelFormat, "'" + name_for_errors + "': " + e.what());
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::Resource, "out of memory reading '" + name_for_errors + "'");
  }
}

TensorStore read_safetensors(const std::string& path) { return parse_safetensors(map_file(path), path); }

}  // namespace sdn
