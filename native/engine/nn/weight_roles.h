// Which stored types each weight may have, by what the networks do with it. One table, asked
// by every loader (ModelWeights, the tiny autoencoder's Weights), by conversion (target_type)
// and by inspectModel, so that a file either loads and runs or is refused at load naming the
// tensor: never a weight that reaches a ggml op without a kernel for its type (an I16 linear
// weight, a Q8_1 matrix), which kills the process on the first graph.
#pragma once

#include <string>

#include "io/tensor_store.h"

namespace sdn {

// What a tensor is used for, told from its name and rank (the same under a file's own naming
// and the internal one).
enum class WeightRole {
  Matrix,         // 2-D: linear layers, ggml_mul_mat's first operand
  TokenTable,     // "token_embedding": rows looked up with ggml_get_rows
  PositionTable,  // "position(al)_embedding": cast to f32 and added to the token rows
  ConvKernel,     // 4-D: im2col + mul_mat, where the unfolded input takes the kernel's type
  Vector,         // 0-/1-D: biases, norm scales; decoded to f32 at load
  Buffer,         // "position_ids", LDM's DDPM schedule buffers: read by no op
  Other,          // 3-D: nothing in the networks has that rank
};

WeightRole weight_role(const TensorInfo& t);
// "a linear weight", "a conv kernel", ...: for messages.
const char* weight_role_name(WeightRole role);

// Empty when `t`'s stored type is one its role takes; else why not, naming the tensor, its
// type and what the role takes (the text of the ModelFormat error a load gives).
std::string stored_type_problem(const TensorInfo& t);
// Throws ModelFormat with stored_type_problem() when it is not empty.
void check_stored_type(const TensorInfo& t);

}  // namespace sdn
