#!/usr/bin/env bash
# Step time and peak RSS of the reference-free preference methods (ORPO,
# SimPO) against DPO's, on the same sequences (align bench train draws them
# from a fixed seed), one process per run so that peak RSS compares, the
# methods interleaved ROUNDS times so that load on a shared machine falls
# on each alike. Each figure is the fastest of the rounds (what the step
# costs when the machine is not busy elsewhere), with the median after it
# for the spread; the ratios are of the fastest. DPO's
# reference forward (once per pair per run: cached) is printed apart, with
# DPO's first-epoch cost per pair (step + reference) against the others'.
#
#   scripts/bench-methods-step.sh                          # tiny, small (Q8_0)
#   MODELS=../shared/models/stories260K.gguf scripts/bench-methods-step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ=${SEQ:-256}
STEPS=${STEPS:-3}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-$(nproc)}
METHODS=${METHODS:-dpo orpo simpo}
models=${MODELS:-}
if [ -z "$models" ]; then
  mkdir -p models
  for size in ${SIZES:-tiny small}; do
    m=models/$size-q8_0.gguf
    [ -f "$m" ] || ./bin/align model init --out "$m" --size "$size" --type q8_0 --seed 1
    models="$models $m"
  done
fi
for m in $models; do
  out=$(mktemp)
  for r in $(seq "$ROUNDS"); do
    for method in $METHODS; do
      ./bin/align bench train --model "$m" --method "$method" --seq "$SEQ" --steps "$STEPS" --threads "$THREADS" --no-baseline --json >>"$out"
    done
  done
  python3 - "$m" "$out" <<'PY'
import json, statistics, sys
name, rows = sys.argv[1], [json.loads(l) for l in open(sys.argv[2])]
by = {}
for r in rows:
    by.setdefault(r["method"], []).append(r)
med = lambda m, k: statistics.median(r.get(k, 0) for r in by[m])
low = lambda m, k: min(r.get(k, 0) for r in by[m])
d_step, d_rss, d_ref = low("dpo", "step_ms"), low("dpo", "peak_rss_mb"), low("dpo", "reference_ms")
print(f"{name}: seq {rows[0]['seq']}, {rows[0]['threads']} threads, {rows[0]['device']}, fastest (median) of {len(by['dpo'])} interleaved runs")
print(f"  {'method':6s} {'ms/step':>18s} {'peak RSS MiB':>13s} {'step/DPO':>9s} {'RSS/DPO':>8s} {'1st-epoch cost/DPO':>19s}")
for m in by:
    step, rss, ref = low(m, "step_ms"), low(m, "peak_rss_mb"), low(m, "reference_ms")
    print(f"  {m:6s} {step:8.1f} ({med(m, 'step_ms'):7.1f}) {rss:13.0f} {step/d_step:9.2f} {rss/d_rss:8.2f} {(step+ref)/(d_step+d_ref):19.2f}")
print(f"  DPO reference forward {d_ref:.1f} ms ({med('dpo', 'reference_ms'):.1f}) per pair, once per run (cached in OUT/reference.json); ORPO and SimPO have none")
PY
  rm -f "$out"
done
