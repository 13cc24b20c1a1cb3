#!/usr/bin/env bash
# Generation speed of `align sample` next to llama.cpp's own generation loop
# (native/tools/llama_gen_bench.cpp) on the same model, prompt, sampler,
# seed and threads: same engine, so the ratio should be close to 1. Then
# generation from the live policy of a trainer (no adapter file, the
# trainer's copy of the base): one sequence, and 8 decoded together
# (tokens/s over all sequences).
set -euo pipefail
cd "$(dirname "$0")/.."
ninja -C build llama_gen_bench >/dev/null
THREADS=${THREADS:-$(nproc)}
N=${N:-128}
REPS=${REPS:-3}
PROMPT="Hello! Can you recommend a manga series for my nephew? He is twelve and loves sports and adventure stories."
mkdir -p models
for spec in tiny:q8_0 small:q8_0 small:q4_k; do
  size=${spec%%:*}; type=${spec##*:}
  m=models/$size-$type.gguf
  [ -f "$m" ] || ./bin/align model init --out "$m" --size "$size" --type "$type" --seed 1
  for rep in $(seq "$REPS"); do
    a=$(./bin/align sample --model "$m" --raw --prompt "$PROMPT" -n "$N" --seed 1 --threads "$THREADS" --json)
    l=$(build/native/llama_gen_bench "$m" "$PROMPT" "$N" "$THREADS" 1)
    python3 - "$size-$type" "$rep" "$a" "$l" <<'PY'
import json, sys
name, rep, a, l = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
print(f"{name:12s} rep {rep}: align {a['generated_tokens']:4d} tok {a['tokens_per_s']:8.1f} tok/s (prompt {a['prompt_tokens_per_s']:8.1f}) | "
      f"llama.cpp {l['generated_tokens']:4d} tok {l['tokens_per_s']:8.1f} tok/s (prompt {l['prompt_tokens_per_s']:8.1f}) | "
      f"ratio {a['tokens_per_s']/l['tokens_per_s']:.3f}")
PY
  done
  live=$(./bin/align bench train --model "$m" --method sft --seq 64 --steps 1 --no-baseline --sample "$N" --threads "$THREADS" --json)
  python3 - "$size-$type" "$live" <<'PY'
import json, sys
name, r = sys.argv[1], json.loads(sys.argv[2])
print(f"{name:12s} live policy: {r['live_sample_tokens_per_s']:8.1f} tok/s one sequence, {r['live_batch_tokens_per_s']:8.1f} tok/s over "
      f"{r['live_batch_seqs']} at once; peak RSS train {r['train_peak_rss_mb']:.0f} MiB, train + sample {r['peak_rss_mb']:.0f} MiB "
      f"({r['peak_rss_mb']/r['train_peak_rss_mb']:.3f} x)")
PY
done
