// One in-memory view of a model file's tensors, whatever the file format. Readers (torch zip,
// later safetensors and GGUF) validate everything and fill a TensorStore; networks take their
// weights from it by name and shape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sdn {

// Element types as files store them. `Ggml` marks data in one of ggml's block formats
// (quantized GGUF tensors): TensorInfo::ggml_type says which.
enum class DType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, Bool, Ggml };

const char* dtype_name(DType t);
// Bytes per element; 0 for Ggml (sizes come from the block format).
size_t dtype_size(DType t);
// Floating-point element types (F64 … F8). DType::Ggml blocks are floats too, but only the
// types ggml can decode (TensorStore::to_f32 says which).
bool is_float_dtype(DType t);
// "[a, b, c]", for messages.
std::string shape_text(const std::vector<int64_t>& shape);

// Bytes a store reads tensors from: a read-only memory map of a file, or an owned buffer.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual const uint8_t* data() const = 0;
  virtual size_t size() const = 0;
  // A memory map of a file: its pages can be used in place and dropped again (they reload
  // from the file), unlike an owned buffer.
  virtual bool mapped() const { return false; }
  // Hints for a map: the range will be read soon / will be read now (its pages mapped into the
  // process in one call where the OS can, rather than one page fault at a time) / is no longer
  // needed in memory.
  virtual void prefetch(const uint8_t* /*p*/, size_t /*n*/) const {}
  virtual void populate(const uint8_t* /*p*/, size_t /*n*/) const {}
  virtual void release(const uint8_t* /*p*/, size_t /*n*/) const {}
  bool contains(const uint8_t* p, size_t n) const { return p >= data() && n <= size() && p - data() <= static_cast<std::ptrdiff_t>(size() - n); }
};

// Opens `path` read-only (memory-mapped where the OS allows). Throws FileAccess for a missing
// path, a directory, a non-regular file (FIFO, device) or an unreadable file.
std::shared_ptr<ByteSource> map_file(const std::string& path);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  int ggml_type = -1;  // for DType::Ggml: the ggml_type of its blocks
  std::vector<int64_t> shape;  // outermost first, as PyTorch reports it; {} for a scalar
  const uint8_t* data = nullptr;  // contiguous, row-major, little-endian
  size_t nbytes = 0;
  // Elements per stored row, when that is not the last dimension's length: a conv kernel
  // [OC, IC, KH, KW] kept in ggml blocks as the [OC, IC·KH·KW] matrix it multiplies as (KW
  // alone fills no block). Set from GGUF metadata sdnode.unfolded.<name> (files sdnode
  // writes) or when a kernel is quantized on load; 0 otherwise.
  int64_t unfolded_row = 0;

  int64_t numel() const;
  // What ggml's rows of this tensor hold: unfolded_row, else the last dimension (1 for a scalar).
  int64_t row_length() const { return unfolded_row > 0 ? unfolded_row : shape.empty() ? 1 : shape.back(); }
};

class TensorStore {
 public:
  // Keeps `source` alive for as long as the store: tensors point into it.
  void keep_alive(std::shared_ptr<ByteSource> source);
  // Owns a buffer for a tensor that had to be made contiguous; returns its bytes.
  uint8_t* own_buffer(size_t nbytes);
  // Throws ModelFormat on a duplicate name.
  void add(TensorInfo info);
  // Takes over `other`'s byte sources and owned buffers, so that views into them (added with
  // add()) stay valid for as long as this store. `other` is left empty: no tensors, no memory.
  void absorb(TensorStore&& other);

  const TensorInfo* find(const std::string& name) const;
  // The source whose bytes hold `t`'s data; null when the store owns them (own_buffer).
  const ByteSource* source_of(const TensorInfo& t) const;

  // File-level metadata as text: safetensors' __metadata__, GGUF key-values (arrays are
  // summarised as "[N x type]"). Keys are unique; a later set() replaces.
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Moves the metadata out (the store keeps none), so that a caller can free a hostile file's
  // 200k entries on a worker thread rather than wherever the store ends.
  std::map<std::string, std::string> take_metadata() { return std::move(metadata_); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  size_t size() const { return tensors_.size(); }

  // Converts a floating-point tensor (F64/F32/F16/BF16/F8_E4M3/F8_E5M2, or a ggml block type
  // that ggml can decode) to f32 or f16 into dst, which holds numel() elements. Throws
  // ModelFormat for other dtypes.
  static void to_f32(const TensorInfo& t, float* dst);
  static void to_f16(const TensorInfo& t, uint16_t* dst);

 private:
  std::vector<std::shared_ptr<ByteSource>> sources_;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sdn
