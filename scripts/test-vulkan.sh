#!/usr/bin/env bash
# Builds the Vulkan backend and runs on it the TAEF2 round trip, the UNet and whole images
# against the CPU, and graphs that outgrow each other's buffers (what crashed lavapipe until
# each graph got a fresh context). On a machine without a GPU the device is Mesa's lavapipe
# (a CPU Vulkan driver), which proves the Vulkan path computes the same images, not only that
# it compiles.
#
# Debian 12's Vulkan headers (1.3.239) are too old for ggml 0.23 (VK_EXT_layer_settings);
# Debian 13's headers (header-only packages) work with Debian 12's loader, glslc and Mesa.
# They are unpacked into a private folder, never installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/sdnode"
sdk="$cache/vulkan-headers-trixie"
build_dir="${SDNODE_VULKAN_BUILD_DIR:-build-vulkan}"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  for p in libvulkan1 mesa-vulkan-drivers glslc; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ ! -f "$sdk/usr/include/vulkan/vulkan_core.h" ]; then
    # A trixie source next to the system's own (same mirror), pinned so nothing is ever
    # upgraded from it; used only to download two header packages.
    src=/etc/apt/sources.list.d/debian.sources
    lists="$cache/apt-trixie"
    mkdir -p "$lists/lists/partial" "$lists/archives/partial" "$sdk"
    sed -e 's/^Suites:.*/Suites: trixie/' "$src" | awk 'BEGIN{RS="";ORS="\n\n"} !/security/' > "$lists/trixie.sources"
    opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$lists"
          -o Dir::State::Lists="$lists/lists" -o Dir::Cache::Archives="$lists/archives"
          -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq
    (cd "$lists" && apt-get "${opts[@]}" download libvulkan-dev spirv-headers)
    for deb in "$lists"/libvulkan-dev_*.deb "$lists"/spirv-headers_*.deb; do dpkg -x "$deb" "$sdk"; done
  fi
fi

if [ ! -f "$sdk/usr/include/vulkan/vulkan_core.h" ]; then
  echo "test-vulkan: Vulkan >= 1.4 headers not found in $sdk (run as root on Debian, or set VULKAN_SDK)" >&2
  exit 1
fi
# FindVulkan looks in $VULKAN_SDK/{include,lib}: headers from trixie, the system's loader.
mkdir -p "$sdk/usr/lib"
# awk reads to the end: exiting at the first match would kill ldconfig with SIGPIPE (pipefail).
loader=$(ldconfig -p | awk '!found && (/libvulkan\.so\.1 .*x86-64/ || /libvulkan\.so\.1 \(libc6,AArch64/) {print $NF; found=1}')
ln -sf "$loader" "$sdk/usr/lib/libvulkan.so"
export VULKAN_SDK="${VULKAN_SDK:-$sdk/usr}"

SDNODE_GPU=vulkan SDNODE_CPU_VARIANTS=native SDNODE_BUILD_DIR="$build_dir" \
  node scripts/build-native.mjs --out "$build_dir/out"

# ggml skips CPU-type Vulkan devices (lavapipe) unless they are listed explicitly.
export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
export SDNODE_ADDON_PATH="$PWD/$build_dir/out/sdnode.node"
export SDNODE_TEST_DEVICE=vulkan:0
# The Vulkan set as users install it: npm run pack:all's tarballs (this build's Vulkan module
# beside build/Release's CPU set) in an empty project, probed on lavapipe, and falling back to
# the CPU where libvulkan.so.1 is hidden (test/packaging-vulkan.test.ts).
export SDNODE_PACKAGING_VULKAN_DIR="$PWD/$build_dir/out"
# lavapipe runs compute shaders on the CPU: minutes per image, not seconds.
npx vitest run --testTimeout=900000 test/tae-roundtrip.test.ts test/device-parity.test.ts test/device-growing-graphs.test.ts \
  test/packaging-vulkan.test.ts
