#!/usr/bin/env bash
# Compile check of the CUDA backend on a machine without a GPU: builds the addon with
# libggml-cuda for one architecture (default 89; override with SDNODE_CUDA_ARCHITECTURES).
# ggml's CUDA backend links cuBLAS: the toolkit must include it (cublas_v2.h, libcublas).
# On a machine with a GPU, run the round trip on it afterwards:
#   SDNODE_ADDON_PATH=$PWD/build-cuda/out/sdnode.node SDNODE_TEST_DEVICE=cuda:0 \
#     npx vitest run test/tae-roundtrip.test.ts
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
SDNODE_GPU=cuda SDNODE_CPU_VARIANTS=native SDNODE_BUILD_DIR=build-cuda \
SDNODE_CUDA_ARCHITECTURES="${SDNODE_CUDA_ARCHITECTURES:-89}" \
  node scripts/build-native.mjs --out build-cuda/out
ls -la build-cuda/out
