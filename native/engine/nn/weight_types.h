// Which type each weight is kept in on the device or in a converted file, and the conversion
// into it. One set of rules for quantize-on-load and for convertModel (reasons in the .cpp).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/job_control.h"
#include "ggml.h"
#include "io/tensor_store.h"

namespace sdn {

struct WeightType {
  const char* name;  // as users write it: "f16", "q8_0", "q4_k"
  ggml_type type;
  ggml_ftype ftype;  // GGUF general.file_type
};

// Weight types a user can ask for: "f32", "f16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1",
// "q2_k", "q3_k", "q4_k", "q5_k", "q6_k" (the ones ggml quantizes without an importance matrix).
const std::vector<std::string>& weight_type_names();
// Throws InvalidArgument for an unknown name.
const WeightType& find_weight_type(const std::string& name);

// The type `t` becomes under `w`; with no `w` ("as stored"), f32, f16 and ggml block types are
// kept, except 1-D tensors, which become f32, and other float types (bf16, f64, f8) become f16. Integer tensors keep
// their width (GGML_TYPE_I64/I32/I16/I8). A stored type `t`'s role cannot take
// (nn/weight_roles.h) throws ModelFormat naming the tensor.
ggml_type target_type(const TensorInfo& t, const WeightType* w);

// True when `t`, held in `type`, is a conv kernel [OC, IC, KH, KW] kept as the [OC, IC·KH·KW]
// matrix its product with the unfolded input takes (ggml_ne [IC·KH·KW, OC]): a block type,
// whose blocks cannot fill rows of KW. GGUF files record such kernels' shapes under
// sdnode.unfolded.<name>; conv2d() multiplies them with f32 columns.
bool is_unfolded_kernel(const TensorInfo& t, ggml_type type);
// Elements per row of `t` held in `type`: IC·KH·KW for an unfolded kernel, else t.row_length().
int64_t stored_row_length(const TensorInfo& t, ggml_type type);

// True when `t`'s bytes already are `type`'s bytes (no conversion needed).
bool stored_as(const TensorInfo& t, ggml_type type);

// "F16", "Q8_0": a ggml type as users see it in reports.
std::string type_name_upper(ggml_type t);

// Converts `t` to `type` in slices of about a million elements and passes each converted slice
// to `sink` in order; the bytes concatenate to the tensor in `type`. Checks `job` between
// slices. Buffers stay a few MB whatever the tensor's size.
using ByteSink = std::function<void(const void* bytes, size_t n)>;
void convert_tensor(const TensorInfo& t, ggml_type type, const ByteSink& sink, const JobControl& job);

}  // namespace sdn
