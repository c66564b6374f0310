// Writer for GGUF v3 files (ggml's format): key-value metadata, then tensor infos, then the
// tensor data, each tensor aligned to 32 bytes. Tensor data is streamed: the caller declares
// every tensor (name, shape, type) up front, then hands over each tensor's bytes in order and
// in pieces, so a model is never held in memory whole.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sdn {

class GgufWriter {
 public:
  static constexpr uint32_t kAlignment = 32;

  GgufWriter() = default;
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;
  ~GgufWriter();

  // Metadata, in the order added. Throws InvalidArgument on a duplicate key.
  void add_string(const std::string& key, const std::string& value);
  void add_u32(const std::string& key, uint32_t value);

  // Declares a tensor. `ne` is ggml's order (innermost first: the reverse of PyTorch's shape),
  // 1 to 4 dimensions; `type` a ggml_type whose block size divides ne[0]. Returns its byte size.
  // Throws InvalidArgument on a duplicate name or a shape the type cannot store.
  size_t add_tensor(const std::string& name, const std::vector<int64_t>& ne, int type);

  // Creates `path`, which must not exist (exclusively: never an existing file, never through a
  // symlink), and writes the header, metadata and tensor infos. Throws FileAccess.
  void begin(const std::string& path);
  // The next bytes of the current tensor (tensors in the order declared). A tensor is complete
  // when its declared byte size has been written; writing past it throws Internal.
  void write(const void* data, size_t nbytes);
  // Checks every tensor was written in full, flushes to disk (fsync) and closes. Throws
  // FileAccess on a write error (a full disk shows here at the latest).
  void finish();
  // Closes without checks (after an error); the caller removes the file.
  void close();

 private:
  struct Kv {
    std::string key;
    uint32_t type;
    std::string str;
    uint32_t u32 = 0;
  };
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    int type;
    size_t nbytes;
    uint64_t offset;
  };

  void put(const void* p, size_t n);
  void put_u32(uint32_t v) { put(&v, 4); }
  void put_u64(uint64_t v) { put(&v, 8); }
  void put_string(const std::string& s);
  void pad_to_alignment();
  void check_key(const std::string& key) const;

  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
  uint64_t data_size_ = 0;
  std::FILE* file_ = nullptr;
  std::string path_;
  uint64_t written_ = 0;        // bytes written to the file so far
  size_t current_ = 0;          // tensor being written
  size_t current_written_ = 0;  // its bytes written so far
};

}  // namespace sdn
