#!/usr/bin/env bash
# RL step benchmark on the ~100M fixture (--size small, Q8_0): a PPO and a
# GRPO step broken into rollout, scoring, old/reference log-probs, value
# pass and update time, and each run's peak RSS against a DPO run on the
# same model, one process per run (GNU time's maximum resident set size).
# The RL runs use the toy phrase reward of align/rl's tests (no judge in
# the loop: scoring is ~0 ms), through the test binary's TestBenchStep.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-small}
TYPE=${TYPE:-q8_0}
STEPS=${STEPS:-2}
THREADS=${THREADS:-$(nproc)}
NEW=${NEW_TOKENS:-32}
m=models/$SIZE-$TYPE.gguf
mkdir -p models
[ -f bin/align ] || make build
[ -f "$m" ] || ./bin/align model init --out "$m" --size "$SIZE" --type "$TYPE" --seed 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
GOENV=(CGO_ENABLED=1 CGO_CPPFLAGS="-DALIGN_NATIVE_STAMP=$(cat build/native/libalign_native.a build/libllama.a build/ggml/*.a | sha1sum | cut -c1-16)")
env "${GOENV[@]}" go test -c -o "$tmp/rl.test" ./align/rl
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }

# DPO on the first DPO_PAIRS shipped pairs: the memory baseline (policy and
# frozen reference on the same base)
head -n "${DPO_PAIRS:-16}" testdata/pairs/train.jsonl >"$tmp/pairs.jsonl"
/usr/bin/time -v ./bin/align train --method dpo --model "$m" --data "$tmp/pairs.jsonl" --eval-split 0 \
  --max-steps "$STEPS" --threads "$THREADS" --out "$tmp/dpo" --json >"$tmp/dpo.json" 2>"$tmp/dpo.time"
dpo_rss=$(rss "$tmp/dpo.time")

for method in ppo grpo; do
  (cd align/rl && RL_BENCH_MODEL="$PWD/../../$m" RL_BENCH_METHOD=$method RL_BENCH_STEPS=$STEPS RL_BENCH_THREADS=$THREADS \
    RL_BENCH_NEW_TOKENS=$NEW /usr/bin/time -v "$tmp/rl.test" -test.run '^TestBenchStep$' -test.count=1 \
    >"$tmp/$method.out" 2>"$tmp/$method.time")
  python3 - "$method" "$(grep '^BENCH ' "$tmp/$method.out" | cut -c7-)" "$(rss "$tmp/$method.time")" "$dpo_rss" "$SIZE-$TYPE" <<'PY'
import json, sys
method, r, rss, dpo, name = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
keys = ["rollout_s", "score_s", "old_logps_s", "ref_logps_s", "value_s", "update_s"]
print(f"{name} {method.upper()}: {r['seqs_per_step']} completions/step x {r['max_new_tokens']} new tokens, {r['ppo_epochs']} optimisation pass(es)")
for row in r["steps"]:
    t = {k: row.get("time/" + k, 0.0) for k in keys}
    tot = sum(t.values())
    print(f"  step {row['step']}: " + "  ".join(f"{k[:-2]} {1000*v:7.0f} ms" for k, v in t.items()) + f"  total {1000*tot:7.0f} ms")
print(f"  peak RSS {rss/1024:.0f} MiB, DPO {dpo/1024:.0f} MiB: {method.upper()}/DPO {rss/dpo:.2f}" + (" (target <= 1.3)" if method == "ppo" else ""))
PY
done
