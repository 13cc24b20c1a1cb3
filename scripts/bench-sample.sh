#!/usr/bin/env bash
# Generation speed of align next to llama.cpp's own loops
# (native/tools/llama_gen_bench.cpp) on the same model, prompt, sampler,
# seeds and threads: same engine, so each ratio should be close to 1.
#
#   1. align sample vs llama.cpp's single-sequence loop (the base model).
#   2. The live policy of a trainer (align bench train --sample: no adapter
#      file, the trainer's copy of the base) vs llama.cpp running the same
#      adapter (written by --save-adapter) from a file: one sequence, and
#      8 decoded together (align_generate_batch, as PPO and GRPO roll out,
#      vs llama.cpp's batched decode), with the seeds align used.
#
# Every line gives the tokens each side generated: a sequence that ends at
# end-of-sequence early times fewer tokens (align retries other seeds for
# the full length; llama.cpp then runs the seeds align kept).
# Environment: THREADS, N (tokens per sequence), REPS, ALIGN (the binary),
# LLAMA_GEN_BENCH (a built tool; default: build it with ninja), MODELS
# (size:type list), OUT (where the models and adapters go).
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGN=${ALIGN:-./bin/align}
TOOL=${LLAMA_GEN_BENCH:-}
if [ -z "$TOOL" ]; then
  ninja -C build llama_gen_bench >/dev/null
  TOOL=build/native/llama_gen_bench
fi
THREADS=${THREADS:-$(nproc)}
N=${N:-128}
REPS=${REPS:-3}
MODELS=${MODELS:-tiny:q8_0 small:q8_0 small:q4_k}
OUT=${OUT:-models}
PROMPT="Hello! Can you recommend a manga series for my nephew? He is twelve and loves sports and adventure stories."
mkdir -p "$OUT"
echo "threads $THREADS, $N tokens per sequence, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
for spec in $MODELS; do
  size=${spec%%:*}; type=${spec##*:}
  m=$OUT/$size-$type.gguf
  [ -f "$m" ] || "$ALIGN" model init --out "$m" --size "$size" --type "$type" --seed 1 >/dev/null
  for rep in $(seq "$REPS"); do
    a=$("$ALIGN" sample --model "$m" --raw --prompt "$PROMPT" -n "$N" --seed 1 --threads "$THREADS" --json)
    l=$("$TOOL" "$m" "$PROMPT" "$N" "$THREADS" 1)
    python3 - "$size-$type" "$rep" "$a" "$l" <<'PY'
import json, sys
name, rep, a, l = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
print(f"{name:12s} rep {rep} sample:       align {a['generated_tokens']:4d} tok {a['tokens_per_s']:8.1f} tok/s (prompt {a['prompt_tokens_per_s']:8.1f}) | "
      f"llama.cpp {l['generated_tokens']:4d} tok {l['tokens_per_s']:8.1f} tok/s (prompt {l['prompt_tokens_per_s']:8.1f}) | "
      f"ratio {a['tokens_per_s']/l['tokens_per_s']:.3f}")
PY
  done
  # the live policy: rank 8 on q,k,v,o (with all seven targets batched
  # generation on the ~100M fixture trips a GGML_ASSERT, see the edges report)
  ad=$OUT/live-$size-$type.gguf
  for rep in $(seq "$REPS"); do
    live=$("$ALIGN" bench train --model "$m" --method sft --seq 64 --steps 1 --no-baseline --sample "$N" --sample-prompt "$PROMPT" \
      --lora-rank 8 --lora-alpha 16 --lora-targets q,k,v,o --save-adapter "$ad" --threads "$THREADS" --json 2>/dev/null)
    s1=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["live_sample_seed"])' "$live")
    s8=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["live_batch_seed"])' "$live")
    l1=$("$TOOL" "$m" "$PROMPT" "$N" "$THREADS" "$s1" 1 "$ad")
    l8=$("$TOOL" "$m" "$PROMPT" "$N" "$THREADS" "$s8" 8 "$ad")
    python3 - "$size-$type" "$rep" "$live" "$l1" "$l8" <<'PY'
import json, sys
name, rep, r, l1, l8 = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
print(f"{name:12s} rep {rep} live 1 seq:   align {r['live_sample_tokens']:4d} tok {r['live_sample_tokens_per_s']:8.1f} tok/s (seed {r['live_sample_seed']}) | "
      f"llama.cpp + adapter {l1['generated_tokens']:4d} tok {l1['tokens_per_s']:8.1f} tok/s | ratio {r['live_sample_tokens_per_s']/l1['tokens_per_s']:.3f}")
print(f"{name:12s} rep {rep} live 8 seqs:  align {r['live_batch_tokens']:4d} tok {r['live_batch_tokens_per_s']:8.1f} tok/s (seeds {r['live_batch_seed']}+) | "
      f"llama.cpp + adapter {l8['generated_tokens']:4d} tok {l8['tokens_per_s']:8.1f} tok/s | ratio {r['live_batch_tokens_per_s']/l8['tokens_per_s']:.3f}; "
      f"peak RSS train {r['train_peak_rss_mb']:.0f} MiB, + sample {r['peak_rss_mb']:.0f} MiB ({r['peak_rss_mb']/r['train_peak_rss_mb']:.3f} x)")
PY
  done
done
