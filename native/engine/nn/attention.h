// Multi-head scaled dot-product attention on projected queries, keys and values, the part that
// CLIP's self-attention, the UNet's self- and cross-attention and the VAE's mid-block attention
// share.
#pragma once

#include "ggml.h"

namespace sdn {

// q [D, N, B], k and v [D, M, B] (D = heads × head width) -> [D, N, B]. `causal`: query i
// attends to keys 0..i only (CLIP's text mask).
ggml_tensor* multihead_attention(ggml_context* ctx, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, int heads,
                                 bool causal);

}  // namespace sdn
