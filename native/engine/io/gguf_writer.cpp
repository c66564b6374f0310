#include "io/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#ifdef _WIN32
#include <io.h>
#else
#include <unistd.h>
#endif

#include "core/error.h"
#include "ggml.h"
#include "io/gguf.h"

namespace sdn {

namespace {

// GGUF value types used here, numbered as the format numbers them.
constexpr uint32_t kTypeU32 = 4;
constexpr uint32_t kTypeString = 8;
constexpr uint32_t kVersion = 3;

uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

}  // namespace

GgufWriter::~GgufWriter() { close(); }

void GgufWriter::check_key(const std::string& key) const {
  if (key.empty()) fail(ErrorCode::InvalidArgument, "GGUF metadata key must not be empty");
  for (const Kv& kv : kvs_) {
    if (kv.key == key) fail(ErrorCode::InvalidArgument, "GGUF metadata key '" + key + "' given twice");
  }
}

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  check_key(key);
  kvs_.push_back({key, kTypeString, value, 0});
}

void GgufWriter::add_u32(const std::string& key, uint32_t value) {
  check_key(key);
  kvs_.push_back({key, kTypeU32, "", value});
}

size_t GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& ne, int type) {
  if (file_) fail(ErrorCode::Internal, "GGUF tensor '" + name + "' declared after writing began");
  if (name.empty() || name.size() > kGgufMaxTensorName)
    fail(ErrorCode::InvalidArgument, "GGUF tensor name '" + name + "' must have 1 to " + std::to_string(kGgufMaxTensorName) + " bytes");
  for (const Tensor& t : tensors_) {
    if (t.name == name) fail(ErrorCode::InvalidArgument, "GGUF tensor '" + name + "' given twice");
  }
  if (ne.empty() || ne.size() > GGML_MAX_DIMS)
    fail(ErrorCode::InvalidArgument, "GGUF tensor '" + name + "' has " + std::to_string(ne.size()) + " dimensions (1 to 4)");
  if (type < 0 || type >= GGML_TYPE_COUNT || ggml_blck_size(static_cast<ggml_type>(type)) == 0)
    fail(ErrorCode::InvalidArgument, "GGUF tensor '" + name + "': type " + std::to_string(type) + " is not a ggml type");
  const ggml_type t = static_cast<ggml_type>(type);
  int64_t rows = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] < 1) fail(ErrorCode::InvalidArgument, "GGUF tensor '" + name + "' has an empty dimension");
    if (d > 0) {
      if (rows > INT64_MAX / ne[d]) fail(ErrorCode::InvalidArgument, "GGUF tensor '" + name + "' is too large");
      rows *= ne[d];
    }
  }
  if (ne[0] % ggml_blck_size(t) != 0)
    fail(ErrorCode::InvalidArgument, "GGUF tensor '" + name + "': row length " + std::to_string(ne[0]) +
                                         " is not a multiple of " + ggml_type_name(t) + "'s block size " +
                                         std::to_string(ggml_blck_size(t)));
  const size_t row_bytes = ggml_row_size(t, ne[0]);
  if (static_cast<uint64_t>(rows) > SIZE_MAX / row_bytes)
    fail(ErrorCode::InvalidArgument, "GGUF tensor '" + name + "' is too large");
  const size_t nbytes = row_bytes * static_cast<size_t>(rows);
  tensors_.push_back({name, ne, type, nbytes, data_size_});
  data_size_ = align_up(data_size_ + nbytes, kAlignment);
  return nbytes;
}

void GgufWriter::put(const void* p, size_t n) {
  if (n == 0) return;
  if (std::fwrite(p, 1, n, file_) != n)
    fail(ErrorCode::FileAccess, "'" + path_ + "': write failed: " + std::strerror(errno));
  written_ += n;
}

void GgufWriter::put_string(const std::string& s) {
  put_u64(s.size());
  put(s.data(), s.size());
}

void GgufWriter::pad_to_alignment() {
  static const uint8_t zeros[kAlignment] = {};
  put(zeros, static_cast<size_t>(align_up(written_, kAlignment) - written_));
}

void GgufWriter::begin(const std::string& path) {
  if (file_) fail(ErrorCode::Internal, "GGUF writer already started");
  path_ = path;
  // "x": O_EXCL, so a file or symlink planted under the name is never written through.
  file_ = std::fopen(path.c_str(), "wbx");
  if (!file_) fail(ErrorCode::FileAccess, "'" + path + "': cannot create: " + std::strerror(errno));
  written_ = 0;
  put("GGUF", 4);
  put_u32(kVersion);
  put_u64(tensors_.size());
  put_u64(kvs_.size());
  for (const Kv& kv : kvs_) {
    put_string(kv.key);
    put_u32(kv.type);
    if (kv.type == kTypeString) put_string(kv.str);
    else put_u32(kv.u32);
  }
  for (const Tensor& t : tensors_) {
    put_string(t.name);
    put_u32(static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) put(&n, 8);
    put_u32(static_cast<uint32_t>(t.type));
    put_u64(t.offset);
  }
  pad_to_alignment();
  current_ = 0;
  current_written_ = 0;
}

void GgufWriter::write(const void* data, size_t nbytes) {
  if (!file_) fail(ErrorCode::Internal, "GGUF writer: write before begin");
  const auto* p = static_cast<const uint8_t*>(data);
  while (nbytes > 0) {
    // Tensors with no bytes left (none in practice: shapes are non-empty) are skipped.
    while (current_ < tensors_.size() && current_written_ == tensors_[current_].nbytes) {
      pad_to_alignment();
      ++current_;
      current_written_ = 0;
    }
    if (current_ >= tensors_.size()) fail(ErrorCode::Internal, "GGUF writer: more data than the tensors declared");
    const size_t n = std::min(nbytes, tensors_[current_].nbytes - current_written_);
    put(p, n);
    p += n;
    nbytes -= n;
    current_written_ += n;
  }
}

void GgufWriter::finish() {
  if (!file_) fail(ErrorCode::Internal, "GGUF writer: finish before begin");
  while (current_ < tensors_.size() && current_written_ == tensors_[current_].nbytes) {
    pad_to_alignment();
    ++current_;
    current_written_ = 0;
  }
  if (current_ != tensors_.size())
    fail(ErrorCode::Internal, "GGUF writer: tensor '" + tensors_[current_].name + "' was not written in full");
  // On disk before the caller renames it into place, so a crash never leaves a renamed but empty file.
#ifdef _WIN32
  const bool flushed = std::fflush(file_) == 0 && _commit(_fileno(file_)) == 0;
#else
  const bool flushed = std::fflush(file_) == 0 && fsync(fileno(file_)) == 0;
#endif
  const int err = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed) fail(ErrorCode::FileAccess, "'" + path_ + "': write failed: " + std::strerror(err));
}

void GgufWriter::close() {
  if (file_) std::fclose(file_);
  file_ = nullptr;
}

}  // namespace sdn
