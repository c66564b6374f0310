// The table, and why each row takes what it takes:
//
//  role            floats  quantized       integers  consumer
//  Matrix          yes     kernel set      no        ggml_mul_mat(weight, x): the CPU calls the type's vec_dot,
//                                                    which integer types and Q8_1 / Q8_K lack (SIGSEGV)
//  TokenTable      yes     kernel set      no        ggml_get_rows: ops.cpp aborts on a type it has no row
//                                                    decoder for
//  PositionTable   yes     kernel set      no        ggml_cast to f32 (float types only), then ggml_add: a
//                                                    quantized table is decoded to f16 at load (target_type)
//  ConvKernel      yes     unfolded only   no        ggml_im2col makes F16 or F32 columns, and mul_mat(columns,
//                                                    kernel) has no kernel for any other kernel type
//                                                    (GGML_ASSERT(*cur_backend_id != -1)); a quantized kernel
//                                                    is stored as its [OC, IC·KH·KW] matrix (rows of KW fill
//                                                    no block) and multiplied as mul_mat(kernel, f32 columns)
//  Vector          yes     kernel set      no        decoded to f32 at load, then ggml_add / ggml_mul
//  Buffer          yes     no              yes       nothing (position_ids, I64 in every SD1.x checkpoint)
//  Other (3-D)     yes     no              no        nothing in the networks; floats, as every float-typed
//                                                    rule below applies to them
//
// Floats are F64, F32, F16, BF16, F8_E4M3, F8_E5M2 (the loader keeps f32/f16 and turns the rest
// into f16, or f32 for 1-D). "Kernel set" is the ggml block types that ggml's CPU, CUDA, Vulkan
// and Metal backends all multiply and look up: the classic Q4_0 Q4_1 Q5_0 Q5_1 Q8_0, the
// K-quants Q2_K..Q6_K (every type convertModel writes is among these) and IQ4_NL / IQ4_XS.
// Other block types a GGUF may hold (the 1-3-bit IQ types, TQ, MXFP4, NVFP4, Q8_1, Q8_K) have
// no kernel on some device or none at all; they are refused rather than run on some devices
// and crash on others. U8 and BOOL are taken by no role.
#include "nn/weight_roles.h"

#include <cstring>

#include "core/error.h"
#include "ggml.h"
#include "io/model_file.h"

namespace sdn {

namespace {

struct RoleRule {
  WeightRole role;
  const char* name;
  bool floats;
  bool quantized;
  bool integers;
  const char* takes;  // for messages
};

constexpr RoleRule kRules[] = {
    {WeightRole::Matrix, "a linear weight", true, true, false, "a float type or Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q2_K-Q6_K/IQ4_NL/IQ4_XS"},
    {WeightRole::TokenTable, "a token embedding", true, true, false, "a float type or Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q2_K-Q6_K/IQ4_NL/IQ4_XS"},
    {WeightRole::PositionTable, "a position embedding", true, true, false, "a float type or Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q2_K-Q6_K/IQ4_NL/IQ4_XS"},
    {WeightRole::ConvKernel, "a conv kernel", true, true, false,
     "a float type (F32, F16, BF16, F64, F8), or a block type from the kernel set stored unfolded (as [OC, IC·KH·KW])"},
    {WeightRole::Vector, "a bias or norm weight", true, true, false, "a float type or Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q2_K-Q6_K/IQ4_NL/IQ4_XS"},
    {WeightRole::Buffer, "an index buffer", true, false, true, "a float or integer type (I8, I16, I32, I64)"},
    {WeightRole::Other, "a 3-D tensor", true, false, false, "a float type (F32, F16, BF16, F64, F8)"},
};

const RoleRule& rule_of(WeightRole role) {
  for (const RoleRule& r : kRules) {
    if (r.role == role) return r;
  }
  fail(ErrorCode::Internal, "weight role without a rule");
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool ends_with(const std::string& s, const char* tail) {
  const size_t n = std::strlen(tail);
  return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

bool is_integer(DType d) { return d == DType::I64 || d == DType::I32 || d == DType::I16 || d == DType::I8; }

bool in_kernel_set(int ggml_type_id) {
  switch (ggml_type_id) {
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ4_NL:
    case GGML_TYPE_IQ4_XS: return true;
    default: return false;
  }
}

}  // namespace

WeightRole weight_role(const TensorInfo& t) {
  if (ends_with(t.name, "position_ids")) return WeightRole::Buffer;
  if (contains(t.name, "token_embedding")) return WeightRole::TokenTable;
  if (contains(t.name, "position_embedding") || contains(t.name, "positional_embedding")) return WeightRole::PositionTable;
  switch (t.shape.size()) {
    case 0:
    case 1: return WeightRole::Vector;
    case 2: return WeightRole::Matrix;
    case 4: return WeightRole::ConvKernel;
    default: return WeightRole::Other;
  }
}

const char* weight_role_name(WeightRole role) { return rule_of(role).name; }

std::string stored_type_problem(const TensorInfo& t) {
  const RoleRule& rule = rule_of(weight_role(t));
  const bool ok = is_float_dtype(t.dtype)  ? rule.floats
                  : is_integer(t.dtype)     ? rule.integers
                  : t.dtype == DType::Ggml ? rule.quantized && in_kernel_set(t.ggml_type) &&
                                                 (rule.role != WeightRole::ConvKernel || t.unfolded_row == t.numel() / t.shape[0])
                                           : false;
  if (ok) return {};
  return "tensor '" + t.name + "' is " + rule.name + " stored as " + tensor_type_name(t) + "; it must be " + rule.takes;
}

void check_stored_type(const TensorInfo& t) {
  std::string problem = stored_type_problem(t);
  if (!problem.empty()) fail(ErrorCode::ModelFormat, problem);
}

}  // namespace sdn
