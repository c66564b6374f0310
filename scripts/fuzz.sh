#!/usr/bin/env bash
# Builds a libFuzzer target per model-file parser and the name planner (ASan + UBSan, clang) and runs each for
# FUZZ_SECONDS (default 60). Seeds: small checkpoints for the torch reader (torch-seeds.mjs), and
# whatever earlier runs left in the corpus folders. Needs the ggml libraries of a normal
# build (`npm install` or `npm run build:native`) for the type traits the GGUF reader uses.
#   bash scripts/fuzz.sh                 # all parsers, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh gguf
#   FUZZ_RUNS=10000000 bash scripts/fuzz.sh   # a count of executions instead of a time
#                                             # (the scheduled run: .github/workflows/fuzz.yml)
#
# `generate` mode fuzzes load *and* generate() instead: mutants of a tiny model in each format
# (safetensors, GGUF, .ckpt: types, shapes, offsets, names, metadata, data, header bytes), each
# loaded and run for one 32x32 step on the CPU in a worker process that is replaced when it
# crashes (scripts/fuzz/generate.mjs). Needs the built package (npm install). Findings (crash,
# stall, an error without a code) are kept under $FUZZ_DIR/generate; exits 1 on a crash or stall.
#   bash scripts/fuzz.sh generate                          # 10,000 mutants per format
#   FUZZ_MUTANTS=500 FUZZ_SEED=7 FUZZ_JOBS=2 bash scripts/fuzz.sh generate
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = generate ]; then
  exec node scripts/fuzz/generate.mjs --mutants "${FUZZ_MUTANTS:-10000}" --seed "${FUZZ_SEED:-1}" \
    --jobs "${FUZZ_JOBS:-1}" --out "${FUZZ_DIR:-build-fuzz}/generate"
fi
seconds="${FUZZ_SECONDS:-60}"
out="${FUZZ_DIR:-build-fuzz}"
data="${SDNODE_SHARED_DATA:-../shared/data}"
targets=("${@:-safetensors gguf torch_checkpoint name_map}")
read -r -a targets <<< "${targets[*]}"

if ! command -v clang++ >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
fi
libs=build-cmake/bin
[ -f "$libs/libggml-base.so" ] || { echo "fuzz: run npm install (or npm run build:native) first" >&2; exit 1; }

io=(native/engine/core/error.cpp native/engine/io/tensor_store.cpp)
declare -A sources=(
  [safetensors]="native/engine/io/safetensors.cpp"
  [gguf]="native/engine/io/gguf.cpp"
  [torch_checkpoint]="native/engine/io/torch_checkpoint.cpp native/engine/io/pickle.cpp native/engine/io/zip_index.cpp"
  [name_map]="native/engine/io/name_map.cpp native/engine/io/name_map_diffusers.cpp"
)
mkdir -p "$out"
for t in "${targets[@]}"; do
  bin="$out/fuzz_$t"
  # shellcheck disable=SC2086
  clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Inative/engine -Ivendor/ggml/include "native/fuzz/fuzz_$t.cpp" ${sources[$t]} "${io[@]}" \
    -L"$libs" -lggml-base -Wl,-rpath,"$PWD/$libs" -o "$bin"
  corpus="$out/corpus_$t"
  mkdir -p "$corpus"
  # Small checkpoints that fit the input limit whole (a real one cut short has no zip directory).
  [ "$t" = torch_checkpoint ] && node scripts/generator/torch-seeds.mjs "$corpus"
  # The name planner starts from the real key layouts: the generator's LDM and diffusers indexes.
  [ "$t" = name_map ] && node scripts/generator/name-index.mjs "$corpus"
  limit=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
  # The planner's cost grows with the index: 4 KB (about 50 tensors) reaches every naming rule;
  # the full-size seed indexes are run whole when the corpus is loaded.
  max_len=1048576
  [ "$t" = name_map ] && max_len=4096
  # Findings (crash-*, leak-*, timeout-*, oom-*) and slow inputs go beside the corpus, not into the working tree.
  artifacts="$out/artifacts_$t"
  mkdir -p "$artifacts"
  echo "[fuzz] $t: ${limit[0]#-}"
  "$bin" "$corpus" "${limit[@]}" -rss_limit_mb=2048 -max_len="$max_len" -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1 |
    grep -E "^stat::number_of_executed_units|^stat::peak_rss|ERROR|SUMMARY|Done" || true
  if ls "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-* >/dev/null 2>&1; then
    echo "[fuzz] $t: findings in $artifacts" >&2
    exit 1
  fi
done
