#!/usr/bin/env bash
# Memory of the LM head by scored tokens per step, on the ~100M fixture: a
# DPO training step over 1, 4 and 16 pairs of 257 tokens
# (512, 2,048 and 8,192 scored tokens) prints the head's compute buffer
# (O(n_vocab · chunk), not O(n_vocab · scored)), the body's, and the peak
# RSS. One process per size, so peak RSS compares.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
TYPE=${TYPE:-q8_0}
mkdir -p models
m=models/small-$TYPE.gguf
[ -f "$m" ] || ./bin/align model init --out "$m" --size small --type "$TYPE" --seed 1
for spec in 1:257 4:257 16:257; do
  pairs=${spec%%:*}; seq=${spec##*:}
  r=$(./bin/align bench train --model "$m" --method dpo --pairs "$pairs" --seq "$seq" --steps 1 --no-baseline --threads "$THREADS" --json)
  python3 - "$r" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"scored {r['scored_tokens']:5d} ({r['seqs']} x {r['seq']} tokens): head {r['head_compute_mb']:7.1f} MiB, "
      f"body {r['body_compute_mb']:8.1f} MiB, peak RSS {r['peak_rss_mb']:7.0f} MiB, {r['step_ms']:8.0f} ms/step")
PY
done
