#!/usr/bin/env bash
# Real vocabularies and shapes on the CPU (issue 20), one process per run so
# peak RSS compares:
#   shape  a llama3-1b-shaped Q4_K fixture with the Llama 3 vocabulary (all
#          16 layers; LAYERS=N for fewer): align bench train (SFT, DPO; with
#          --backward-weights auto and tiles, or BACKWARD="..."):
#          training tok/s / prompt processing with logits at every position,
#          peak RSS of the step; align sample on a SEQ-token prompt: llama.cpp's
#          last-token prefill and the peak RSS of sampling
#   head   DPO step time and peak RSS vs scored tokens (1 and 4 pairs of 257
#          tokens) on tiny fixtures with V = 3,113 (built-in), 128,256
#          (Llama 3), 151,669 (Qwen3), 262,145 (Gemma 3)
# Usage: scripts/bench-realvocab.sh [shape|head|all]   (ALIGN=bin/align, MODELS=models)
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGN=${ALIGN:-./bin/align}
MODELS=${MODELS:-models}
THREADS=${THREADS:-$(nproc)}
SEQ=${SEQ:-256}
STEPS=${STEPS:-2}
what=${1:-all}
mkdir -p "$MODELS"
tok=$(scripts/fetch-tokenizers.sh)
rss() { /usr/bin/time -f '%M' -o "$1" "${@:2}"; }

if [ "$what" = shape ] || [ "$what" = all ]; then
  # --size 1b: Llama 3.2 1B's widths with an untied head
  m=$MODELS/llama3-1b${LAYERS:+-$LAYERS}-q4_k.gguf
  [ -f "$m" ] || $ALIGN model init --out "$m" --tokenizer "$tok/llama3_1/package/models" --size 1b ${LAYERS:+--layers $LAYERS} --type q4_k --seed 1
  # BACKWARD: the --backward-weights values to run (auto: resident
  # transposed copies; tiles: none, made in tiles each backward)
  for bw in ${BACKWARD:-auto tiles}; do
  for method in sft dpo; do
    # the trainer loads its base for training (on AMX CPUs in plain host
    # memory, as the LogProbs baseline it is compared with; elsewhere
    # repacked, except with tiles)
    $ALIGN bench train --model "$m" --method $method --seq "$SEQ" --steps "$STEPS" --threads "$THREADS" --backward-weights "$bw" --json >/tmp/align-bench-$method.json
    python3 - /tmp/align-bench-$method.json "$bw" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['method']:4s} {sys.argv[2]:5s} seq {r['seq']}: {r['step_ms']:9.0f} ms/step {r['tokens_per_s']:6.1f} tok/s | LogProbs pp (logits at every position) "
      f"{r['llama_pp_tokens_per_s']:6.1f} tok/s, train/pp {r['train_over_pp']:.2f} | peak RSS {r['peak_rss_mb']:6.0f} MiB "
      f"(transposed copies {r['transposed_bytes']/2**20:.0f} MiB, body {r['body_compute_mb']:.0f} MiB, head {r['head_compute_mb']:.0f} MiB)")
PY
  done
  done
  prompt=$(python3 -c "print(' '.join(['manga'] * $SEQ))")
  for extra in 0 1; do
    ALIGN_NO_EXTRA_BUFTS=$extra rss /tmp/align-sample-rss $ALIGN sample --model "$m" --raw --prompt "$prompt" -n 1 --temperature 0 --threads "$THREADS" --json >/tmp/align-sample.json
    python3 - /tmp/align-sample.json /tmp/align-sample-rss $extra <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); kb = int(open(sys.argv[2]).read().split()[-1])
how = "plain host weights" if sys.argv[3] == "1" else "llama.cpp's buffers (repack/AMX)"
print(f"sample ({how}): {r['prompt_tokens']} prompt tokens, llama.cpp prefill (logits of the last token) {r['prompt_tokens_per_s']:.1f} tok/s, peak RSS {kb/1024:.0f} MiB")
PY
  done
fi

if [ "$what" = head ] || [ "$what" = all ]; then
  for v in builtin llama3_1 qwen3 gemma3; do
    arch=llama; [ $v = qwen3 ] && arch=qwen3; [ $v = gemma3 ] && arch=gemma3
    m=$MODELS/head-$v.gguf
    if [ ! -f "$m" ]; then
      if [ $v = builtin ]; then $ALIGN model init --out "$m" --arch $arch --type q8_0 --seed 1
      else $ALIGN model init --out "$m" --tokenizer "$tok/$v/package/models" --arch $arch --type q8_0 --seed 1; fi
    fi
    for pairs in 1 4; do
      $ALIGN bench train --model "$m" --method dpo --pairs $pairs --seq 257 --steps 1 --no-baseline --threads "$THREADS" --json >/tmp/align-head.json
      python3 - /tmp/align-head.json $v <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:9s} {r['arch']:6s} scored {r['scored_tokens']:5d}: {r['step_ms']:8.0f} ms/step, head {r['head_compute_mb']:7.1f} MiB, "
      f"body {r['body_compute_mb']:7.1f} MiB, transposed {r['transposed_bytes']/2**20:6.1f} MiB, peak RSS {r['peak_rss_mb']:6.0f} MiB")
PY
    done
  done
fi
