#include "io/tensor_store.h"

#include <cerrno>
#include <cstring>
#include <new>

#include "core/error.h"
#include "ggml.h"

#ifdef _WIN32
#include <filesystem>
#include <fstream>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace sdn {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::Bool: return "BOOL";
    case DType::Ggml: return "GGML";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16: return 2;
    case DType::F8_E4M3:
    case DType::F8_E5M2:
    case DType::I8:
    case DType::U8:
    case DType::Bool: return 1;
    case DType::Ggml: return 0;
  }
  return 1;
}

bool is_float_dtype(DType t) {
  switch (t) {
    case DType::F64:
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::F8_E4M3:
    case DType::F8_E5M2: return true;
    default: return false;
  }
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // readers have checked the product for overflow
  return n;
}

// ---------------------------------------------------------------------------------------------
// Byte sources

namespace {

class OwnedSource : public ByteSource {
 public:
  explicit OwnedSource(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  const uint8_t* data() const override { return bytes_.data(); }
  size_t size() const override { return bytes_.size(); }

 private:
  std::vector<uint8_t> bytes_;
};

std::string quoted(const std::string& path) { return "'" + path + "'"; }

#ifndef _WIN32
#if defined(__linux__)
#ifdef MADV_POPULATE_READ
constexpr int kPopulateRead = MADV_POPULATE_READ;
#else
constexpr int kPopulateRead = 22;  // the kernel's value, for C libraries that predate it
#endif
#endif

class MappedSource : public ByteSource {
 public:
  MappedSource(void* addr, size_t size) : addr_(addr), size_(size) {}
  ~MappedSource() override { munmap(addr_, size_); }
  const uint8_t* data() const override { return static_cast<const uint8_t*>(addr_); }
  size_t size() const override { return size_; }
  bool mapped() const override { return true; }
  void prefetch(const uint8_t* p, size_t n) const override { advise(p, n, MADV_WILLNEED, false); }
  // Page faults one at a time cost ~0.9 s a GiB of cached file on a VM here; MADV_POPULATE_READ
  // (Linux 5.14) maps the same pages in ~0.1 s. Older kernels refuse it: the faults happen then.
  void populate(const uint8_t* p, size_t n) const override {
#if defined(__linux__)
    advise(p, n, kPopulateRead, false);
#else
    (void)p, (void)n;
#endif
  }
  // Drops only the pages wholly inside the range: a neighbour's bytes may share the edge pages.
  void release(const uint8_t* p, size_t n) const override { advise(p, n, MADV_DONTNEED, true); }

 private:
  void advise(const uint8_t* p, size_t n, int advice, bool inner) const {
    if (!contains(p, n) || n == 0) return;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + n;
    begin = inner ? (begin + page - 1) / page * page : begin / page * page;
    end = inner ? end / page * page : (end + page - 1) / page * page;
    const uintptr_t map_end = reinterpret_cast<uintptr_t>(addr_) + size_;
    if (end > map_end) end = map_end;
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, advice);  // a hint: errors do not matter
  }

  void* addr_;
  size_t size_;
};

[[noreturn]] void fail_errno(const std::string& what, const std::string& path, int err) {
  fail(ErrorCode::FileAccess, what + " " + quoted(path) + ": " + std::strerror(err));
}

void check_regular(const struct stat& st, const std::string& path) {
  if (S_ISDIR(st.st_mode)) fail(ErrorCode::FileAccess, quoted(path) + " is a directory, not a file");
  if (!S_ISREG(st.st_mode)) fail(ErrorCode::FileAccess, quoted(path) + " is not a regular file");
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};
#endif

}  // namespace

std::shared_ptr<ByteSource> map_file(const std::string& path) {
  if (path.find('\0') != std::string::npos)
    fail(ErrorCode::FileAccess, "model path contains a NUL character");
  if (path.empty()) fail(ErrorCode::FileAccess, "model path is empty");

#ifndef _WIN32
  // stat first so that opening never touches a device or FIFO; fstat again after open in case
  // the path was swapped in between.
  struct stat st;
  if (stat(path.c_str(), &st) != 0) fail_errno("cannot open", path, errno);
  check_regular(st, path);
  Fd f{open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (f.fd < 0) fail_errno("cannot open", path, errno);
  if (fstat(f.fd, &st) != 0) fail_errno("cannot stat", path, errno);
  check_regular(st, path);
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > SIZE_MAX)
    fail(ErrorCode::FileAccess, quoted(path) + " is too large to map");
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return std::make_shared<OwnedSource>(std::vector<uint8_t>{});
  void* addr = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (addr == MAP_FAILED) fail_errno("cannot map", path, errno);
  return std::make_shared<MappedSource>(addr, size);
#else
  // No mapping on Windows yet: read the whole file into memory.
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p = fs::u8path(path);
  const fs::file_status status = fs::status(p, ec);
  if (ec || !fs::exists(status))
    fail(ErrorCode::FileAccess, "cannot open " + quoted(path) + ": " + (ec ? ec.message() : "no such file"));
  if (fs::is_directory(status)) fail(ErrorCode::FileAccess, quoted(path) + " is a directory, not a file");
  if (!fs::is_regular_file(status)) fail(ErrorCode::FileAccess, quoted(path) + " is not a regular file");
  const uintmax_t size = fs::file_size(p, ec);
  if (ec) fail(ErrorCode::FileAccess, "cannot stat " + quoted(path) + ": " + ec.message());
  if (size > SIZE_MAX) fail(ErrorCode::FileAccess, quoted(path) + " is too large to read");
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(ErrorCode::FileAccess, "cannot open " + quoted(path));
  std::vector<uint8_t> bytes;
  try {
    bytes.resize(static_cast<size_t>(size));
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::Resource, "out of memory reading " + quoted(path));
  }
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    fail(ErrorCode::FileAccess, "cannot read " + quoted(path));
  return std::make_shared<OwnedSource>(std::move(bytes));
#endif
}

// ---------------------------------------------------------------------------------------------
// TensorStore

void TensorStore::keep_alive(std::shared_ptr<ByteSource> source) { sources_.push_back(std::move(source)); }

uint8_t* TensorStore::own_buffer(size_t nbytes) {
  uint8_t* p = new (std::nothrow) uint8_t[nbytes ? nbytes : 1];
  if (!p) fail(ErrorCode::Resource, "out of memory: cannot allocate " + std::to_string(nbytes) + " bytes for a tensor");
  owned_.emplace_back(p);
  return p;
}

void TensorStore::add(TensorInfo info) {
  if (index_.count(info.name)) fail(ErrorCode::ModelFormat, "duplicate tensor name '" + info.name + "'");
  index_.emplace(info.name, tensors_.size());
  tensors_.push_back(std::move(info));
}

const ByteSource* TensorStore::source_of(const TensorInfo& t) const {
  for (const auto& s : sources_) {
    if (s->contains(t.data, t.nbytes)) return s.get();
  }
  return nullptr;
}

void TensorStore::absorb(TensorStore&& other) {
  if (&other == this) return;
  for (auto& s : other.sources_) sources_.push_back(std::move(s));
  for (auto& b : other.owned_) owned_.push_back(std::move(b));
  // Its tensors pointed into what this store now owns: the moved-from store keeps none.
  other.sources_.clear();
  other.owned_.clear();
  other.tensors_.clear();
  other.index_.clear();
  other.metadata_.clear();
}

const TensorInfo* TensorStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---------------------------------------------------------------------------------------------
// Conversions. Tensor bytes may be unaligned (zip entries need not be), so loads use memcpy.

namespace {

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

float bits_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

uint32_t f32_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));  // inf, nan (payload kept)
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    // Subnormal: shift the mantissa up until its leading 1 becomes the implicit bit.
    exp = 1;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ffu;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Rounds `mant >> shift` to nearest, ties to even. shift is 1..63.
uint64_t round_shift(uint64_t mant, unsigned shift) {
  const uint64_t q = mant >> shift;
  const uint64_t rem = mant & ((uint64_t{1} << shift) - 1);
  const uint64_t half = uint64_t{1} << (shift - 1);
  return (rem > half || (rem == half && (q & 1))) ? q + 1 : q;
}

// Binary float with `mbits` mantissa bits and exponent bias `bias` → IEEE half, round to
// nearest even. Handles f32 (23, 127) and f64 (52, 1023) in one place, so f64 → f16 rounds
// once instead of twice through f32.
uint16_t to_half(uint64_t bits, unsigned mbits, unsigned ebits) {
  const int bias = (1 << (ebits - 1)) - 1;
  const uint16_t sign = static_cast<uint16_t>((bits >> (mbits + ebits)) & 1u) << 15;
  const int exp = static_cast<int>((bits >> mbits) & ((1u << ebits) - 1));
  const uint64_t mant = bits & ((uint64_t{1} << mbits) - 1);
  if (exp == (1 << ebits) - 1) {  // inf or nan; keep nan quiet and non-zero
    if (mant == 0) return sign | 0x7c00u;
    return sign | 0x7e00u | static_cast<uint16_t>((mant >> (mbits - 10)) & 0x3ffu);
  }
  if (exp == 0) return sign;  // zero or a source subnormal: far below the half range
  const int e = exp - bias;   // unbiased
  const uint64_t full = mant | (uint64_t{1} << mbits);
  if (e >= -14) {
    // Normal half (or overflow). Rounding may carry into the exponent, which is right.
    uint64_t m = round_shift(full, mbits - 10);  // 11 bits incl. implicit, maybe 0x800
    int he = e + 15;
    if (m == 0x800) {
      m >>= 1;
      ++he;
    }
    if (he >= 31) return sign | 0x7c00u;
    return sign | static_cast<uint16_t>(he << 10) | static_cast<uint16_t>(m & 0x3ffu);
  }
  // Subnormal half: value = full * 2^(e - mbits), in units of 2^-24.
  const int shift = static_cast<int>(mbits) - 24 - e;  // > mbits - 10
  if (shift > static_cast<int>(mbits) + 1) return sign;  // below half the smallest subnormal
  return sign | static_cast<uint16_t>(round_shift(full, static_cast<unsigned>(shift)));
}

uint16_t float_to_half(float f) { return to_half(f32_bits(f), 23, 8); }

uint64_t f64_bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

// FP8 as safetensors / torch store it (arXiv 2209.05433). E5M2 is the top byte of an IEEE half
// (inf and NaN included). E4M3 ("fn") has bias 7, subnormals, no infinities, and a NaN only at
// S.1111.111; every value, up to 448, is exact in f16 and f32.
float e4m3_to_float(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t exp = (b >> 3) & 0xfu;
  const uint32_t mant = b & 0x7u;
  if (exp == 0xf && mant == 0x7) return bits_f32(sign | 0x7fc00000u);
  if (exp == 0) return bits_f32(sign | f32_bits(static_cast<float>(mant) * 0x1p-9f));  // mant * 2^-9
  return bits_f32(sign | ((exp + 120u) << 23) | (mant << 20));
}

float e5m2_to_float(uint8_t b) { return half_to_float(static_cast<uint16_t>(b << 8)); }

void check_float(const TensorInfo& t, const char* target) {
  if (!is_float_dtype(t.dtype))
    fail(ErrorCode::ModelFormat,
         "tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) + ", which cannot be converted to " + target);
  if (static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype) != t.nbytes)
    fail(ErrorCode::Internal, "tensor '" + t.name + "' byte size does not match its shape");
}

// ggml block formats (quantized GGUF tensors) are decoded by ggml's own routines. The GGUF
// reader has validated type and size, but TensorInfo is a plain struct, so both are checked
// again here before ggml (whose lookups assert) is asked anything.
const ggml_type_traits* checked_ggml_traits(const TensorInfo& t, const char* target) {
  const std::string what = "tensor '" + t.name + "'";
  if (t.ggml_type < 0 || t.ggml_type >= GGML_TYPE_COUNT)
    fail(ErrorCode::Internal, what + " has ggml type id " + std::to_string(t.ggml_type) + ", which ggml does not know");
  const ggml_type type = static_cast<ggml_type>(t.ggml_type);
  const ggml_type_traits* traits = ggml_get_type_traits(type);
  if (traits->blck_size <= 0 || traits->type_size == 0)
    fail(ErrorCode::Internal, what + " has ggml type id " + std::to_string(t.ggml_type) + ", which ggml has removed");
  if (!traits->to_float)
    fail(ErrorCode::ModelFormat,
         what + " has ggml type " + traits->type_name + ", which cannot be converted to " + target);
  const int64_t row = t.row_length();
  if (row <= 0 || row % traits->blck_size != 0)
    fail(ErrorCode::Internal, what + " has rows that are not whole " + traits->type_name + " blocks");
  if (ggml_row_size(type, row) * static_cast<uint64_t>(t.numel() / row) != t.nbytes)
    fail(ErrorCode::Internal, what + " byte size does not match its shape");
  return traits;
}

// Decodes whole blocks a chunk at a time into f32 (f32_dst) or, through a small f32 buffer,
// into f16 (f16_dst). ggml reads blocks through typed pointers, so data that is not 16-byte
// aligned (a GGUF alignment may be as small as 1) is copied to an aligned buffer first.
void ggml_decode(const TensorInfo& t, const char* target, float* f32_dst, uint16_t* f16_dst) {
  const ggml_type_traits* traits = checked_ggml_traits(t, target);
  const uint64_t block = static_cast<uint64_t>(traits->blck_size);
  const uint64_t n_blocks = static_cast<uint64_t>(t.numel()) / block;
  const uint64_t chunk = block >= 16384 ? 1 : 16384 / block;  // blocks per chunk
  const bool aligned = reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
  std::vector<float> f32_buf(f16_dst ? chunk * block : 0);
  const size_t copy_units = (chunk * traits->type_size + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t);
  std::vector<std::max_align_t> copy(aligned ? 0 : copy_units);
  for (uint64_t b = 0; b < n_blocks; b += chunk) {
    const uint64_t nb = n_blocks - b < chunk ? n_blocks - b : chunk;
    const void* src = t.data + b * traits->type_size;
    if (!aligned) {
      std::memcpy(copy.data(), src, nb * traits->type_size);
      src = copy.data();
    }
    float* out = f16_dst ? f32_buf.data() : f32_dst + b * block;
    traits->to_float(src, out, static_cast<int64_t>(nb * block));
    if (f16_dst)
      for (uint64_t k = 0; k < nb * block; ++k) f16_dst[b * block + k] = float_to_half(f32_buf[k]);
  }
}

}  // namespace

void TensorStore::to_f32(const TensorInfo& t, float* dst) {
  if (t.dtype == DType::Ggml) return ggml_decode(t, "f32", dst, nullptr);
  check_float(t, "f32");
  const size_t n = static_cast<size_t>(t.numel());
  const uint8_t* s = t.data;
  switch (t.dtype) {
    case DType::F32:
      if (n) std::memcpy(dst, s, n * 4);
      break;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load<double>(s + i * 8));
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) dst[i] = half_to_float(load<uint16_t>(s + i * 2));
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) dst[i] = bits_f32(static_cast<uint32_t>(load<uint16_t>(s + i * 2)) << 16);
      break;
    case DType::F8_E4M3:
      for (size_t i = 0; i < n; ++i) dst[i] = e4m3_to_float(s[i]);
      break;
    case DType::F8_E5M2:
      for (size_t i = 0; i < n; ++i) dst[i] = e5m2_to_float(s[i]);
      break;
    default: break;
  }
}

void TensorStore::to_f16(const TensorInfo& t, uint16_t* dst) {
  if (t.dtype == DType::Ggml) return ggml_decode(t, "f16", nullptr, dst);
  check_float(t, "f16");
  const size_t n = static_cast<size_t>(t.numel());
  const uint8_t* s = t.data;
  switch (t.dtype) {
    case DType::F16:
      if (n) std::memcpy(dst, s, n * 2);
      break;
    case DType::F32:
      for (size_t i = 0; i < n; ++i) dst[i] = float_to_half(load<float>(s + i * 4));
      break;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) dst[i] = to_half(f64_bits(load<double>(s + i * 8)), 52, 11);
      break;
    case DType::BF16:
      // Every bf16 is exactly an f32, so one rounding.
      for (size_t i = 0; i < n; ++i) dst[i] = float_to_half(bits_f32(static_cast<uint32_t>(load<uint16_t>(s + i * 2)) << 16));
      break;
    case DType::F8_E4M3:
      for (size_t i = 0; i < n; ++i) dst[i] = float_to_half(e4m3_to_float(s[i]));  // exact
      break;
    case DType::F8_E5M2:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<uint16_t>(s[i] << 8);
      break;
    default: break;
  }
}

}  // namespace sdn
