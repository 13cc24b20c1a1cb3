#!/usr/bin/env bash
# Generation speed of `align sample` next to llama.cpp's own generation loop
# (native/tools/llama_gen_bench.cpp) on the same model, prompt, sampler,
# seed and threads: same engine, so the ratio should be close to 1.
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
done
