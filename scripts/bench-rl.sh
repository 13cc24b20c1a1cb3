#!/usr/bin/env bash
# RL step benchmark on the ~100M fixture (--size small, Q8_0): a PPO and a
# GRPO step broken into rollout, scoring, old/reference log-probs, value
# pass and update time (the run's metrics.jsonl time/* columns), and each
# run's peak RSS against a DPO run on the same model, one `align train`
# process per run (GNU time's maximum resident set size). The RL runs use
# the phrase reward contains:z on testdata/prompts/rl-toy.jsonl (no judge
# in the loop: scoring is ~0 ms). Settings: SIZE, TYPE, STEPS, THREADS,
# NEW_TOKENS, DPO_PAIRS; PROMPTS and GROUP override the methods' defaults.
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
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
run() { # name, align train flags...: the run's stderr and GNU time's report in $tmp/name.time
  local name=$1
  shift
  if ! /usr/bin/time -v ./bin/align train --model "$m" --max-steps "$STEPS" --threads "$THREADS" --out "$tmp/$name" \
    --json "$@" >"$tmp/$name.json" 2>"$tmp/$name.time"; then
    cat "$tmp/$name.time" >&2
    exit 1
  fi
}

# DPO on the first DPO_PAIRS shipped pairs: the memory baseline (policy and
# frozen reference on the same base)
head -n "${DPO_PAIRS:-16}" testdata/pairs/train.jsonl >"$tmp/pairs.jsonl"
run dpo --method dpo --data "$tmp/pairs.jsonl" --eval-split 0
dpo_rss=$(rss "$tmp/dpo.time")

for method in ppo grpo; do
  extra=()
  [ -n "${PROMPTS:-}" ] && extra+=(--rollout-batch "$PROMPTS")
  [ -n "${GROUP:-}" ] && extra+=(--group "$GROUP")
  [ "$method" = grpo ] && extra+=(--beta 0.04) # a reference pass, as DeepSeekMath
  run "$method" --method "$method" --prompts testdata/prompts/rl-toy.jsonl --eval-split 0 --reward contains:z \
    --max-new-tokens "$NEW" "${extra[@]}"
  python3 - "$method" "$tmp/$method" "$(rss "$tmp/$method.time")" "$dpo_rss" "$SIZE-$TYPE" <<'PY'
import json, sys
method, out, rss, dpo, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
cfg = json.load(open(out + "/config.json"))
steps = [r for r in map(json.loads, open(out + "/metrics.jsonl")) if r.get("split") == "train"]
keys = ["rollout_s", "score_s", "old_logps_s", "ref_logps_s", "value_s", "update_s"]
print(f"{name} {method.upper()}: {cfg['BatchPrompts'] * cfg['Group']} completions/step x {cfg['MaxNewTokens']} new tokens, "
      f"{cfg['PPOEpochs']} optimisation pass(es), LoRA rank {cfg['Rank']} on {','.join(cfg['Targets'])}")
for row in steps:
    t = {k: row.get("time/" + k, 0.0) for k in keys}
    tot = sum(t.values())
    print(f"  step {row['step']}: " + "  ".join(f"{k[:-2]} {1000*v:7.0f} ms" for k, v in t.items()) + f"  total {1000*tot:7.0f} ms")
print(f"  peak RSS {rss/1024:.0f} MiB, DPO {dpo/1024:.0f} MiB: {method.upper()}/DPO {rss/dpo:.2f}" + (" (target <= 1.3)" if method == "ppo" else ""))
PY
done
