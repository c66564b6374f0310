#!/usr/bin/env bash
# Builds the addon with ggml's CUDA backend for one architecture (default 89; an H100/H200 is
# 90: SDNODE_CUDA_ARCHITECTURES=90) into build-cuda/out. ggml's CUDA backend links cuBLAS: the
# toolkit must include it (cublas_v2.h, libcublas). On a machine with an NVIDIA GPU it then
# runs the device checks on cuda:0: the UNet and whole images against the CPU
# (test/device-parity.test.ts) and the TAE round trip. Without a GPU it is a compile check.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
SDNODE_GPU=cuda SDNODE_CPU_VARIANTS=native SDNODE_BUILD_DIR=build-cuda \
SDNODE_CUDA_ARCHITECTURES="${SDNODE_CUDA_ARCHITECTURES:-89}" \
  node scripts/build-native.mjs --out build-cuda/out
ls -la build-cuda/out
if nvidia-smi -L >/dev/null 2>&1; then
  SDNODE_ADDON_PATH="$PWD/build-cuda/out/sdnode.node" SDNODE_TEST_DEVICE=cuda:0 \
    npx vitest run test/device-parity.test.ts test/tae-roundtrip.test.ts
else
  echo "check-cuda: no NVIDIA GPU here: built, not run"
fi
