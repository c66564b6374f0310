// Reader for PyTorch's zip checkpoints: finds data.pkl in the zip index, interprets it into
// inert values (pickle.h), and turns the state dict's tensors into views of the storages.
#include "io/torch_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "io/checked.h"
#include "io/utf8.h"
#include "io/pickle.h"
#include "io/zip_index.h"

namespace sdn {
namespace {

using namespace io_detail;
using pickle::Kind;
using pickle::kind_name;
using pickle::Node;
using pickle::StorageRef;

struct Reader {
  const ZipIndex& zip;
  const std::string& prefix;
  const pickle::Values& values;
  const PickleBudget& budget;
  TensorStore& store;

  int64_t int_arg(uint32_t v, const std::string& tensor, const char* what) const {
    const Node& n = values.node(v);
    if (n.kind != Kind::Int || n.i < 0) bad("tensor '" + tensor + "' has a bad " + what);
    return n.i;
  }
  std::vector<int64_t> int_tuple(uint32_t v, const std::string& tensor, const char* what) const {
    const Node& n = values.node(v);
    if (n.kind != Kind::Tuple) bad("tensor '" + tensor + "' has a bad " + what);
    if (values.items(n).size() > 64) bad("tensor '" + tensor + "' has too many dimensions");
    std::vector<int64_t> out;
    for (uint32_t x : values.items(n)) out.push_back(int_arg(x, tensor, what));
    return out;
  }

  void add_tensor(const std::string& name, const Node& t) {
    const std::vector<uint32_t>& a = values.items(values.node(t.ref));
    const StorageRef& s = values.storage(values.node(a[0]));
    const int64_t offset = int_arg(a[1], name, "storage offset");
    const std::vector<int64_t> shape = int_tuple(a[2], name, "size");
    const std::vector<int64_t> stride = int_tuple(a[3], name, "stride");
    if (shape.size() != stride.size()) bad("tensor '" + name + "' has a size and stride of different lengths");

    const std::string entry_name = prefix + "/data/" + s.key;
    const ZipEntry* entry = zip.find(entry_name);
    if (!entry) bad("tensor '" + name + "': its storage " + shown(entry_name) + " is missing from the checkpoint");
    const ZipEntry& e = *entry;
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
    const uint8_t* base = zip.data(e);
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
    std::vector<bool> seen(values.node_count(), false);  // dicts entered: a second visit is refused
    seen[root] = true;
    uint64_t visited = 0;
    while (!frames.empty()) {
      Frame& f = frames.back();
      const std::vector<uint32_t>& kv = values.items(values.node(f.dict));
      if (f.next >= kv.size()) {
        frames.pop_back();
        continue;
      }
      const Node& key = values.node(kv[f.next]);
      const Node& value = values.node(kv[f.next + 1]);
      f.next += 2;
      if (++visited > budget.max_nodes) bad("state dict has more than " + std::to_string(budget.max_nodes) + " entries");
      if (value.kind != Kind::Tensor && value.kind != Kind::Dict) continue;  // step counts, strings, lists...
      if (key.kind != Kind::Str) bad("state dict has a " + std::string(kind_name(key.kind)) + " key");
      const std::string_view k = values.str(key);
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

// Top-level string entries kept as metadata: a few, of bounded size (the pickle budget already
// bounds the file; these bound what is copied out of it).
constexpr size_t kMaxMetadataEntries = 256;
constexpr size_t kMaxMetadataValue = 1 << 16;

TensorStore read(std::shared_ptr<ByteSource> src, const PickleBudget& budget) {
  const ZipIndex zip(*src);
  const std::string prefix = find_prefix(zip);

  if (const ZipEntry* bo = zip.find(prefix + "/byteorder")) {
    const std::string order(reinterpret_cast<const char*>(zip.data(*bo)), std::min<uint64_t>(bo->size, 16));
    if (order != "little") bad("checkpoint byte order is '" + shown(order) + "'; only little-endian is supported");
  }

  const ZipEntry& pkl = *zip.find(prefix + "/data.pkl");  // find_prefix saw it
  if (pkl.size > budget.max_pickle_bytes)
    bad("data.pkl is " + std::to_string(pkl.size) + " bytes, over the limit of " + std::to_string(budget.max_pickle_bytes));
  if (!zip.crc_matches(pkl)) bad("data.pkl is corrupt (CRC mismatch)");

  const pickle::Values values = pickle::read(zip.data(pkl), static_cast<size_t>(pkl.size), budget);
  uint32_t root = values.root();
  if (values.node(root).kind != Kind::Dict)
    bad(std::string("checkpoint holds a ") + kind_name(values.node(root).kind) + ", not a state dict");
  // Training checkpoints (SD .ckpt) wrap the weights: {"state_dict": {...}, "global_step": ...}.
  // String entries beside the state dict are the checkpoint's metadata (as a safetensors
  // header's __metadata__), e.g. what shapes cannot tell: sdnode.attention_heads.
  TensorStore store;
  const std::vector<uint32_t>& kv = values.items(values.node(root));
  const uint32_t top = root;
  size_t metadata_entries = 0;
  for (size_t i = 0; i + 1 < kv.size(); i += 2) {
    const Node& k = values.node(kv[i]);
    const Node& v = values.node(kv[i + 1]);
    if (k.kind != Kind::Str) continue;
    if (values.str(k) == "state_dict" && v.kind == Kind::Dict && root == top) root = kv[i + 1];
    if (v.kind == Kind::Str && metadata_entries < kMaxMetadataEntries && values.str(v).size() <= kMaxMetadataValue) {
      store.set_metadata(std::string(values.str(k)), std::string(values.str(v)));
      ++metadata_entries;
    }
  }

  store.keep_alive(src);
  Reader{zip, prefix, values, budget, store}.walk(root);
  return store;
}

}  // namespace

TensorStore parse_torch_checkpoint(std::shared_ptr<ByteSource> bytes, const std::string& name_for_errors, const PickleBudget& budget) {
  try {
    return read(std::move(bytes), budget);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::ModelFormat) throw;
    fail(ErrorCode::ModelFormat, "'" + name_for_errors + "': " + e.what());
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::Resource, "out of memory reading '" + name_for_errors + "'");
  }
}

TensorStore read_torch_checkpoint(const std::string& path, const PickleBudget& budget) {
  return parse_torch_checkpoint(map_file(path), path, budget);
}

}  // namespace sdn
