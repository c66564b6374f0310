#include "nn/weights.h"

#include <vector>

#include "core/error.h"
#include "ggml-backend.h"
#include "nn/weight_roles.h"

namespace sdn {

Weights::Weights(const TensorStore& store, ggml_type float_type, size_t max_tensors)
    : store_(store), float_type_(float_type), max_tensors_(max_tensors) {
  ggml_init_params params{};
  params.mem_size = ggml_tensor_overhead() * (max_tensors + 1);
  params.no_alloc = true;
  ctx_ = ggml_init(params);
  if (!ctx_) fail(ErrorCode::Resource, "could not allocate the weight context");
}

Weights::~Weights() {
  if (buffer_) ggml_backend_buffer_free(buffer_);
  if (ctx_) ggml_free(ctx_);
}

ggml_tensor* Weights::require(const std::string& name, int rank) { return require(name, rank, float_type_); }

ggml_tensor* Weights::require(const std::string& name, int rank, ggml_type type) {
  const TensorInfo* info = store_.find(name);
  if (!info) fail(ErrorCode::ModelCompatibility, "missing tensor '" + name + "'");
  if (static_cast<int>(info->shape.size()) != rank) {
    fail(ErrorCode::ModelCompatibility, "tensor '" + name + "' has rank " + std::to_string(info->shape.size()) +
                                            ", expected " + std::to_string(rank));
  }
  check_stored_type(*info);  // the roles table every loader shares (nn/weight_roles.h)
  if (info->dtype != DType::F32 && info->dtype != DType::F16 && info->dtype != DType::BF16 && info->dtype != DType::F64) {
    fail(ErrorCode::ModelCompatibility, "tensor '" + name + "' has dtype " + dtype_name(info->dtype) + ", expected a float type");
  }
  int64_t ne[4] = {1, 1, 1, 1};
  for (int i = 0; i < rank; ++i) {
    int64_t d = info->shape[rank - 1 - i];
    if (d <= 0 || d > (int64_t(1) << 32)) fail(ErrorCode::ModelCompatibility, "tensor '" + name + "' has a bad dimension");
    ne[i] = d;
  }
  // ggml asserts when its context is full: count ourselves.
  if (declared_.size() >= max_tensors_) fail(ErrorCode::Internal, "more weights declared than the context holds");
  ggml_tensor* t = ggml_new_tensor(ctx_, type, rank, ne);
  ggml_set_name(t, name.c_str());
  declared_.emplace_back(t, info);
  return t;
}

void Weights::upload(ggml_backend_buffer_type* buft) {
  buffer_ = ggml_backend_alloc_ctx_tensors_from_buft(ctx_, buft);
  if (!buffer_) fail(ErrorCode::Resource, "not enough memory for the weights");
  ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  std::vector<uint8_t> staging;
  for (auto& [tensor, info] : declared_) {
    staging.resize(ggml_nbytes(tensor));
    if (tensor->type == GGML_TYPE_F32) {
      TensorStore::to_f32(*info, reinterpret_cast<float*>(staging.data()));
    } else {
      TensorStore::to_f16(*info, reinterpret_cast<uint16_t*>(staging.data()));
    }
    ggml_backend_tensor_set(tensor, staging.data(), 0, staging.size());
  }
}

size_t Weights::bytes() const { return buffer_ ? ggml_backend_buffer_get_size(buffer_) : 0; }

void expect_dim(const std::string& what, int64_t actual, int64_t expected) {
  if (actual != expected) {
    fail(ErrorCode::ModelCompatibility,
         what + ": expected " + std::to_string(expected) + ", the file has " + std::to_string(actual));
  }
}

}  // namespace sdn
