// Which type each tensor becomes, and why:
//
//  - weight type f32 / f16: every floating-point tensor becomes that type (an f16 file is what
//    users know as a half-precision checkpoint: norms and biases in f16 too).
//  - a quantized weight type quantizes a tensor only when all of these hold:
//      * it is named "*.weight" and is either 2-D (a linear layer's, which the networks use
//        through ggml_mul_mat, the one op every backend runs on quantized data) or a 4-D conv
//        kernel of the UNet ("model.diffusion_model.*"). A kernel [OC, IC, KH, KW] is kept as the
//        [OC, IC·KH·KW] matrix it multiplies the unfolded input as (is_unfolded_kernel):
//        conv2d() then unfolds the input in f32 and multiplies it with ggml_mul_mat(kernel,
//        columns) rather than ggml_mul_mat(columns, kernel), whose first operand (the
//        columns ggml_im2col makes) can only be F16 or F32. That is what makes a q4_0 file
//        small: SD1.5's UNet is half conv kernels, which stable-diffusion.cpp keeps in f16. The
//        VAE's and other networks' kernels stay float: the VAE's error lands in the pixels.
//      * it is not an embedding ("embedding" in the name: token_embedding, position_embedding):
//        the position table is added element-wise (an op that does not take quantized
//        operands everywhere) and token rows are looked up, so quantizing saves nothing in
//        compute while its error reaches every token.
//      * it is not the UNet's timestep / class embedding MLP (time_embed.*, label_emb.*): tiny
//        next to the UNet (2 M of SD1.5's 860 M parameters) and it conditions every block;
//        stable-diffusion.cpp keeps it unquantized too.
//      * its row length (ne[0], or IC·KH·KW for a kernel) is a multiple of the block size (32, or 256 for K-quants):
//        blocks never span rows in ggml. K-quants fall back to a 32-wide type for rows that are
//        not (SD1.5's 320- and 640-wide layers), as llama.cpp's quantizer does: q2_k/q3_k ->
//        q4_0, q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0.
//      * it has at least 4096 elements (128 blocks of 32): below that quantizing saves a few KB
//        and costs accuracy; no linear layer of a real SD model is that small (SD1.5's
//        smallest is 320×320), so the rule only keeps stray small matrices in f16.
//    A tensor already stored in the target type is copied as stored (re-quantizing a
//    dequantized block can move values; a q8_0 file converted to q8_0 stays bit-identical).
//  - tensors not quantized: 1-D ones (biases, norm scales) and scalars become f32 (a few KB,
//    and the engine computes them in f32); the rest (conv kernels, embeddings, small or
//    odd-width matrices) f16.
//  - integer tensors (position_ids) are kept as stored (GGUF I8/I16/I32/I64).
//  - before any of this, nn/weight_roles.cpp's table refuses a stored type the tensor's role
//    cannot take (an integer linear weight, a quantized conv kernel, a block type without
//    kernels): ModelFormat naming the tensor, at load and before a converted file is begun.
//  - no weight type ("as stored", the loader's default): f32, f16 and ggml block types stay as
//    they are (memory-mapped where the device can read the file's memory), except that 1-D
//    tensors (biases, norm scales: a few KB) become f32, the type element-wise ops take them
//    in; bf16, f64 and f8, which the networks' ops do not all take, become f16 (1-D: f32);
//    so does a quantized position embedding.
#include "nn/weight_types.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/error.h"
#include "nn/weight_roles.h"

namespace sdn {

namespace {

const WeightType kWeightTypes[] = {
    {"f32", GGML_TYPE_F32, GGML_FTYPE_ALL_F32},       {"f16", GGML_TYPE_F16, GGML_FTYPE_MOSTLY_F16},
    {"q8_0", GGML_TYPE_Q8_0, GGML_FTYPE_MOSTLY_Q8_0}, {"q5_0", GGML_TYPE_Q5_0, GGML_FTYPE_MOSTLY_Q5_0},
    {"q5_1", GGML_TYPE_Q5_1, GGML_FTYPE_MOSTLY_Q5_1}, {"q4_0", GGML_TYPE_Q4_0, GGML_FTYPE_MOSTLY_Q4_0},
    {"q4_1", GGML_TYPE_Q4_1, GGML_FTYPE_MOSTLY_Q4_1}, {"q2_k", GGML_TYPE_Q2_K, GGML_FTYPE_MOSTLY_Q2_K},
    {"q3_k", GGML_TYPE_Q3_K, GGML_FTYPE_MOSTLY_Q3_K}, {"q4_k", GGML_TYPE_Q4_K, GGML_FTYPE_MOSTLY_Q4_K},
    {"q5_k", GGML_TYPE_Q5_K, GGML_FTYPE_MOSTLY_Q5_K}, {"q6_k", GGML_TYPE_Q6_K, GGML_FTYPE_MOSTLY_Q6_K},
};

constexpr int64_t kMinQuantizedElements = 4096;
constexpr int64_t kSliceElements = 1 << 20;  // conversion buffers: a few MB whatever the tensor

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool ends_with(const std::string& s, const char* tail) {
  const size_t n = std::strlen(tail);
  return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

ggml_type k_quant_fallback(ggml_type t) {
  switch (t) {
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K: return GGML_TYPE_Q4_0;
    case GGML_TYPE_Q4_K: return GGML_TYPE_Q5_0;
    case GGML_TYPE_Q5_K: return GGML_TYPE_Q5_1;
    case GGML_TYPE_Q6_K: return GGML_TYPE_Q8_0;
    default: return t;
  }
}

// Whose 4-D kernels may be quantized (unfolded): the UNet's.
bool quantizable_kernel(const TensorInfo& t) {
  return t.shape.size() == 4 && t.name.rfind("model.diffusion_model.", 0) == 0;
}

// The quantized type for a tensor, or GGML_TYPE_COUNT when the rules keep it unquantized.
ggml_type quantized_type(const TensorInfo& t, ggml_type target) {
  if ((t.shape.size() != 2 && !quantizable_kernel(t)) || !ends_with(t.name, ".weight")) return GGML_TYPE_COUNT;
  if (contains(t.name, "embedding") || contains(t.name, "time_embed.") || contains(t.name, "label_emb."))
    return GGML_TYPE_COUNT;
  if (t.numel() < kMinQuantizedElements) return GGML_TYPE_COUNT;
  const int64_t row = t.shape.size() == 4 ? t.numel() / t.shape[0] : t.shape.back();
  if (row % ggml_blck_size(target) != 0) target = k_quant_fallback(target);
  if (row % ggml_blck_size(target) != 0) return GGML_TYPE_COUNT;
  return target;
}

bool is_float(DType d) { return is_float_dtype(d) || d == DType::Ggml; }

ggml_type integer_type(const TensorInfo& t) {
  switch (t.dtype) {
    case DType::I64: return GGML_TYPE_I64;
    case DType::I32: return GGML_TYPE_I32;
    case DType::I16: return GGML_TYPE_I16;
    case DType::I8: return GGML_TYPE_I8;
    default:
      fail(ErrorCode::ModelCompatibility,
           "tensor '" + t.name + "' has type " + dtype_name(t.dtype) + ", which the engine cannot hold");
  }
}

}  // namespace

const std::vector<std::string>& weight_type_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const WeightType& w : kWeightTypes) v.push_back(w.name);
    return v;
  }();
  return names;
}

const WeightType& find_weight_type(const std::string& name) {
  for (const WeightType& w : kWeightTypes) {
    if (name == w.name) {
      if (ggml_is_quantized(w.type) && ggml_quantize_requires_imatrix(w.type))
        fail(ErrorCode::InvalidArgument, "weight type '" + name + "' needs an importance matrix");
      return w;
    }
  }
  fail(ErrorCode::InvalidArgument, "unknown weight type '" + name + "'");
}

ggml_type target_type(const TensorInfo& t, const WeightType* w) {
  check_stored_type(t);
  if (!is_float(t.dtype)) return integer_type(t);
  if (!w) {
    if (t.dtype == DType::F32) return GGML_TYPE_F32;
    if (t.dtype == DType::F16) return t.shape.size() <= 1 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    // A quantized position table is added after a cast, which ggml has for float types only.
    if (t.dtype == DType::Ggml)
      return weight_role(t) == WeightRole::PositionTable ? GGML_TYPE_F16 : static_cast<ggml_type>(t.ggml_type);
    return t.shape.size() <= 1 ? GGML_TYPE_F32 : GGML_TYPE_F16;
  }
  if (!ggml_is_quantized(w->type)) return w->type;
  const ggml_type q = quantized_type(t, w->type);
  if (q != GGML_TYPE_COUNT) return q;
  return t.shape.size() <= 1 ? GGML_TYPE_F32 : GGML_TYPE_F16;
}

bool is_unfolded_kernel(const TensorInfo& t, ggml_type type) {
  return t.shape.size() == 4 && ggml_blck_size(type) > 1;
}

int64_t stored_row_length(const TensorInfo& t, ggml_type type) {
  return is_unfolded_kernel(t, type) ? t.numel() / t.shape[0] : t.row_length();
}

bool stored_as(const TensorInfo& t, ggml_type type) {
  switch (t.dtype) {
    case DType::F32: return type == GGML_TYPE_F32;
    case DType::F16: return type == GGML_TYPE_F16;
    case DType::I64: return type == GGML_TYPE_I64;
    case DType::I32: return type == GGML_TYPE_I32;
    case DType::I16: return type == GGML_TYPE_I16;
    case DType::I8: return type == GGML_TYPE_I8;
    case DType::Ggml: return t.ggml_type == type;
    default: return false;
  }
}

std::string type_name_upper(ggml_type t) {
  std::string name = ggml_type_name(t);
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

void convert_tensor(const TensorInfo& t, ggml_type type, const ByteSink& sink, const JobControl& job) {
  if (stored_as(t, type)) {
    sink(t.data, t.nbytes);
    return;
  }
  const int64_t n = t.numel();
  // Block types (source or target) go by whole rows; plain ones by any run of elements. A
  // block-typed source and target share their rows (a kernel is unfolded in both).
  const bool by_rows = t.dtype == DType::Ggml || ggml_is_quantized(type);
  const int64_t row = t.dtype == DType::Ggml ? t.row_length() : stored_row_length(t, type);
  if (t.dtype == DType::Ggml && ggml_is_quantized(type) && stored_row_length(t, type) != row)
    fail(ErrorCode::Internal, "'" + t.name + "' would change its block rows in conversion");
  const int64_t unit = by_rows ? row : 1;
  const int64_t per_slice = std::max<int64_t>(1, kSliceElements / unit) * unit;
  const size_t src_row_bytes = t.dtype == DType::Ggml ? t.nbytes / static_cast<size_t>(n / row) : 0;
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  std::vector<uint8_t> q;
  for (int64_t start = 0; start < n; start += per_slice) {
    const int64_t count = std::min(n - start, per_slice);
    TensorInfo part = t;
    if (t.dtype == DType::Ggml) {
      part.shape = {count / row, row};
      part.data = t.data + static_cast<size_t>(start / row) * src_row_bytes;
      part.nbytes = static_cast<size_t>(count / row) * src_row_bytes;
    } else {
      part.shape = {count};
      part.data = t.data + static_cast<size_t>(start) * dtype_size(t.dtype);
      part.nbytes = static_cast<size_t>(count) * dtype_size(t.dtype);
    }
    if (type == GGML_TYPE_F16) {
      f16.resize(static_cast<size_t>(count));
      TensorStore::to_f16(part, f16.data());
      sink(f16.data(), f16.size() * sizeof(uint16_t));
    } else {
      f32.resize(static_cast<size_t>(count));
      TensorStore::to_f32(part, f32.data());
      if (type == GGML_TYPE_F32) {
        sink(f32.data(), f32.size() * sizeof(float));
      } else {
        const int64_t rows = count / row;
        q.resize(ggml_row_size(type, row) * static_cast<size_t>(rows));
        const size_t written = ggml_quantize_chunk(type, f32.data(), q.data(), 0, rows, row, nullptr);
        if (written != q.size()) fail(ErrorCode::Internal, "quantizing '" + t.name + "' wrote an unexpected size");
        sink(q.data(), q.size());
      }
    }
    if (start + count < n) job.throw_if_cancelled();
  }
}

}  // namespace sdn
