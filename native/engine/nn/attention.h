// Multi-head scaled dot-product attention on projected queries, keys and values, the part that
// CLIP's self-attention, the UNet's self- and cross-attention and the VAE's mid-block attention
// share.
#pragma once

#include "ggml.h"

struct ggml_backend;

namespace sdn {

struct AttentionOptions {
  // The backend the graph will run on. Given, and the attention is not causal, the fused
  // ggml_flash_attn_ext op is used when that backend supports it for these shapes and types
  // (K and V cast to f16 first where it only takes those) — except on the CPU, which takes the
  // plain path (faster there) while the score pieces it would hold stay small; otherwise, and
  // always when null, the plain path: scores = K·Q, softmax, V·scores. The fused op never
  // materializes the [keys × queries × heads] score matrix: at 512×512 the UNet's first
  // self-attention would need ~0.5 GB of scores per image, which the plain path on a CPU graph
  // holds in pieces of queries (nn/op_split.h).
  ggml_backend* backend = nullptr;
};

// q [D, N, B], k and v [D, M, B] (D = heads × head width) -> [D, N, B]. `causal`: query i
// attends to keys 0..i only (CLIP's text mask).
//
// The environment variable SDNODE_FLASH_ATTENTION=0 turns the fused op off everywhere, =1 uses
// it wherever the backend supports it, the CPU included (switches for comparing the two paths
// and for working around a backend's kernel).
ggml_tensor* multihead_attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, int heads,
                                 bool causal, const AttentionOptions& options = {});

}  // namespace sdn
