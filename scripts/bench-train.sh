#!/usr/bin/env bash
# Training benchmark table: tiny and ~100M-parameter Llama-shaped models
# (Q8_0 and Q4_K bases), SFT and DPO on the same two sequences, one process
# per run so peak RSS compares. Prints the ratios the training issue asks
# for: DPO step ÷ SFT step, DPO RSS ÷ SFT RSS, training ÷ llama.cpp prompt
# processing tokens/s.
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ=${SEQ:-256}
STEPS=${STEPS:-3}
THREADS=${THREADS:-$(nproc)}
mkdir -p models
for spec in ${SPECS:-tiny:q8_0 small:q8_0 small:q4_k}; do
  size=${spec%%:*}; type=${spec##*:}
  m=models/$size-$type.gguf
  [ -f "$m" ] || ./bin/align model init --out "$m" --size "$size" --type "$type" --seed 1
  s=$(./bin/align bench train --model "$m" --method sft --seq "$SEQ" --steps "$STEPS" --threads "$THREADS" --json)
  d=$(./bin/align bench train --model "$m" --method dpo --seq "$SEQ" --steps "$STEPS" --threads "$THREADS" --json)
  python3 - "$size-$type" "$s" "$d" <<'PY'
import json, sys
name, s, d = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for r in (s, d):
    print(f"{name:11s} {r['method']:4s} seq {r['seq']}: {r['step_ms']:8.1f} ms/step {r['tokens_per_s']:7.0f} tok/s "
          f"{r['achieved_gflops']:6.1f} GFLOP/s MFU {100*r['mfu']:5.1f}% (peak f32 {r['peak_gflops_f32']:.0f}, q8_0 {r['peak_gflops_q8_0']:.0f}) "
          f"RSS {r['peak_rss_mb']:6.0f} MiB | llama.cpp pp {r['llama_pp_tokens_per_s']:6.0f} tok/s, train/pp {r['train_over_pp']:.2f}")
print(f"{name:11s} DPO/SFT step {d['step_ms']/s['step_ms']:.2f} (target <= 1.2), DPO/SFT peak RSS {d['peak_rss_mb']/s['peak_rss_mb']:.2f} (target <= 1.1), "
      f"DPO reference forward {d['reference_ms']:.0f} ms once per pair (cached)")
PY
done
