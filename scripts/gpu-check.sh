#!/usr/bin/env bash
# scripts/gpu-check.sh: the CUDA checks and benchmark, for a GPU host with
# CMake, ninja, nvcc and python3 (+ torch, transformers, peft) but no Go and
# no network. Run from the repository root:
#
#   scripts/gpu-check.sh [PHASE ...]     PHASE: build, test, bench (default: all three)
#   scripts/gpu-check.sh --dry-run       the CPU parts here: driver built without CUDA,
#                                        kernels/train checks on the CPU, a tiny CPU bench,
#                                        the PyTorch script's syntax, the report
#   scripts/gpu-check.sh --cpu-smoke     CI: the CUDA bin/align and align_gpu (from
#                                        `make cuda`) start and train on a machine with
#                                        no GPU and no NVIDIA driver
#
# Sources: the pinned ggml and llama.cpp, laid out as in the ollama module,
# at $OLLAMA_ROOT (default shared/ollama: ml/backend/ggml/ggml and
# llama/llama.cpp, 12 MB; `make gpu-sources` copies them from the module
# cache). Results: $OUT/gpu-check.log (everything printed) and $OUT/bench.json
# (align and PyTorch + PEFT rows, ratios, the 70B estimate).
#
# Environment: OUT (default ./gpu-out), CUDA_ARCH (native), BUILD_DIR
# (build-gpu), MODEL_DIR ($BUILD_DIR/bench-models; kept between runs),
# SHAPES ("1b 8b"), TYPES ("q4_k q8_0"), TOKENS (512), STEPS (8),
# PEAK_TFLOPS (989: H100/H200 dense BF16).
#
# Expected time on the H200 host (16 cores): build 3-5 min (ggml-cuda for one
# architecture dominates), test under 1 min, bench 4-6 min (writing the four
# models about half of it; they are reused by a later run). Run `build test`
# and `bench` as two calls when one call is limited to 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
exec > >(tee -a "$LOG") 2>&1
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODEL_DIR=${MODEL_DIR:-$BUILD_DIR/bench-models}
SHAPES=${SHAPES:-1b 8b}
TYPES=${TYPES:-q4_k q8_0}
TOKENS=${TOKENS:-512}
STEPS=${STEPS:-8}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
JOBS=${JOBS:-$(nproc)}
OLLAMA_ROOT=${OLLAMA_ROOT:-$ROOT/shared/ollama}
status=0

say() { echo "== $(date -u +%H:%M:%S) $*"; }
fail() { echo "gpu-check: FAIL: $*"; status=1; }

configure() {  # dir, cuda ON/OFF
  local dir=$1 cuda=$2 extra=()
  if [ "$cuda" = ON ]; then extra+=(-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-native}"); fi
  if [ -d "$OLLAMA_ROOT/ml/backend/ggml/ggml" ]; then extra+=(-DOLLAMA_ROOT="$OLLAMA_ROOT"); fi
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DALIGN_CUDA="$cuda" "${extra[@]}" >"$OUT/cmake-$(basename "$dir").log" 2>&1 ||
    { tail -30 "$OUT/cmake-$(basename "$dir").log"; return 1; }
}

phase_build() {
  say "build: align_gpu with CUDA (${CUDA_ARCH:-native}) in $BUILD_DIR from ${OLLAMA_ROOT}"
  command -v nvcc >/dev/null || { fail "no nvcc on PATH"; return 1; }
  nvcc --version | tail -n 2 | head -n 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  local t0=$SECONDS
  configure "$BUILD_DIR" ON || { fail "cmake"; return 1; }
  ninja -C "$BUILD_DIR" -j "$JOBS" align_gpu >"$OUT/ninja.log" 2>&1 || { tail -40 "$OUT/ninja.log"; fail "build"; return 1; }
  say "build: done in $((SECONDS - t0)) s"
}

phase_test() {  # bin, dir for fixtures
  local bin=$1 dir=$2
  say "test: kernels (OUT_PROD over every base type vs its CPU reference)"
  "$bin" kernels || fail "kernels"
  say "test: training step on the device vs the CPU engine"
  mkdir -p "$dir"
  "$bin" train --dir "$dir" || fail "train"
}

phase_bench() {  # bin, device label
  local bin=$1 rows=$OUT/bench-rows.jsonl
  : >"$rows"
  mkdir -p "$MODEL_DIR"
  for shape in $SHAPES; do
    for type in $TYPES; do
      local m=$MODEL_DIR/llama-$shape-$type.gguf
      if [ ! -f "$m" ]; then
        say "bench: writing $m"
        "$bin" gen --size "$shape" --type "$type" --out "$m" || { fail "gen $shape $type"; continue; }
      fi
      say "bench: align $shape $type, DPO 2 x $TOKENS tokens"
      "$bin" bench --model "$m" --label "$shape-$type" --tokens "$TOKENS" --steps "$STEPS" \
        --peak-tflops "$PEAK_TFLOPS" --json "$OUT/align-$shape-$type.json" && cat "$OUT/align-$shape-$type.json" >>"$rows" ||
        fail "align bench $shape $type"
      if [ "$shape" = "${SHAPES##* }" ] && [ "$type" = q4_k ]; then
        # the largest shape again with recompute: the 70B estimate's basis
        say "bench: align $shape $type with recompute (gradient checkpointing)"
        "$bin" bench --model "$m" --label "$shape-$type-rc" --tokens "$TOKENS" --steps "$STEPS" --recompute 1 \
          --peak-tflops "$PEAK_TFLOPS" --json "$OUT/align-$shape-$type-rc.json" && cat "$OUT/align-$shape-$type-rc.json" >>"$rows" ||
          fail "align bench $shape $type recompute"
      fi
    done
    say "bench: pytorch + peft $shape bf16"
    python3 scripts/gpu_bench_torch.py --shape "$shape" --tokens "$TOKENS" --steps "$STEPS" --peak-tflops "$PEAK_TFLOPS" \
      --json "$OUT/torch-$shape.json" && cat "$OUT/torch-$shape.json" >>"$rows" || fail "pytorch bench $shape"
  done
  say "bench: report"
  python3 scripts/gpu_bench_report.py "$rows" "$OUT/bench.json" || fail "report"
}

case "${1:-}" in
  --dry-run)
    # everything that does not need a GPU, on this machine's CPU
    DRY=${BUILD_DIR_DRY:-build}
    say "dry run: align_gpu without CUDA in $DRY"
    [ -f "$DRY/build.ninja" ] || configure "$DRY" OFF || { fail "cmake"; exit 1; }
    nice -n 10 ninja -C "$DRY" -j "$JOBS" align_gpu >"$OUT/ninja-dry.log" 2>&1 || { tail -40 "$OUT/ninja-dry.log"; fail "build"; exit 1; }
    phase_test "$DRY/native/gpu/align_gpu" "$OUT/fixtures"
    say "dry run: CPU bench on the ~100M fixture (the GPU run uses $SHAPES x $TYPES)"
    rows=$OUT/bench-rows.jsonl
    : >"$rows"
    m=$OUT/fixtures/small-q8_0.gguf
    [ -f "$m" ] || "$DRY/native/gpu/align_gpu" gen --size small --type q8_0 --out "$m" || fail "gen"
    "$DRY/native/gpu/align_gpu" bench --model "$m" --label small-q8_0 --tokens 64 --steps 2 --device CPU \
      --json "$OUT/align-small.json" && cat "$OUT/align-small.json" >>"$rows" || fail "cpu bench"
    "$DRY/native/gpu/align_gpu" bench --model "$m" --label small-q8_0-rc --tokens 64 --steps 2 --device CPU --recompute 1 \
      --json "$OUT/align-small-rc.json" && cat "$OUT/align-small-rc.json" >>"$rows" || fail "cpu bench recompute"
    say "dry run: PyTorch script (syntax; torch is not installed here)"
    python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' \
      scripts/gpu_bench_torch.py scripts/gpu_bench_report.py || fail "python syntax"
    if python3 -c 'import torch, peft, transformers' 2>/dev/null; then
      python3 scripts/gpu_bench_torch.py --shape tiny --tokens 64 --steps 2 --device cpu --peak-tflops 0 \
        --json "$OUT/torch-tiny.json" && cat "$OUT/torch-tiny.json" >>"$rows" || fail "pytorch tiny"
    fi
    # the 70B estimate needs a q4_k row: the report runs on what there is
    python3 scripts/gpu_bench_report.py "$rows" "$OUT/bench.json" || fail "report"
    say "dry run: $([ $status = 0 ] && echo ok || echo FAILED)"
    exit $status
    ;;
  --cpu-smoke)
    # CI, after `make cuda`: the CUDA variant on a machine without a GPU
    T=$(mktemp -d)
    trap 'rm -rf "$T"' EXIT
    say "cpu smoke: the CUDA bin/align without a GPU or driver"
    ./bin/align model init --out "$T/tiny.gguf" --type q8_0 --seed 1 || fail "model init"
    ./bin/align sample --model "$T/tiny.gguf" --prompt "Is Berserk finished?" --seed 1 -n 16 >/dev/null || fail "sample"
    ./bin/align train --method dpo --model "$T/tiny.gguf" --data testdata/pairs/train.jsonl --out "$T/run" \
      --epochs 1 --max-steps 2 --lora-rank 4 >"$T/train.log" 2>&1 || { tail -20 "$T/train.log"; fail "train"; }
    test -f "$T/run/adapter.gguf" || fail "no adapter written"
    say "cpu smoke: align_gpu (CUDA build) falls back to the CPU"
    ${CUDA_BUILD:-build-cuda}/native/gpu/align_gpu kernels >"$T/k.log" 2>&1 || { cat "$T/k.log"; fail "align_gpu kernels (CPU)"; }
    grep -c '^PASS' "$T/k.log" | sed 's/^/  kernels passed: /'
    say "cpu smoke: $([ $status = 0 ] && echo ok || echo FAILED)"
    exit $status
    ;;
esac

phases=${*:-build test bench}
BIN=$BUILD_DIR/native/gpu/align_gpu
for p in $phases; do
  case $p in
    build) phase_build || { say "stop: the build failed"; exit 1; } ;;
    test) phase_test "$BIN" "$BUILD_DIR/fixtures" ;;
    bench) phase_bench "$BIN" ;;
    *) echo "gpu-check: unknown phase $p (build, test, bench)"; exit 2 ;;
  esac
done
say "gpu-check: $([ $status = 0 ] && echo ok || echo FAILED); log $LOG, results $OUT/bench.json"
exit $status
