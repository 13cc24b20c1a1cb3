#!/usr/bin/env bash
# Preference methods side by side on stories260K (testdata/stories:
# cheerful-over-sad story endings): each method trains on its data in a
# process of its own (so peak RSS compares), then every adapter is scored
# on samples of the 40 held-out prompts. Prints
#   method | data | held-out accuracy | cheerful share | fluency | step time ÷ DPO | peak RSS ÷ DPO
# held-out accuracy: rewards/accuracies on testdata/stories/eval.jsonl (80
# pairs) after training; cheerful share: samples (4 per prompt, T 0.8)
# with a cheerful word; fluency: the base model's mean log-prob per token
# of those samples (nats); step time: `align bench train --method M
# --seq 128 --pairs 4 --threads 1` run beside the same for dpo, the
# median of 3 ratios (8 sequences of 128 tokens a step: DPO's 4 pairs,
# KTO's 8 unpaired examples plus its no-gradient pass over their
# mismatched sequences); peak RSS: of the full training run.
#
# Methods: dpo (the pairs), kto (the unpaired feedback: each prompt keeps
# only its liked or only its disliked response, so pairing makes nothing),
# and orpo and simpo when this align has them (a method align does not
# know is skipped). METHODS="dpo kto" picks; EPOCHS_<METHOD> sets epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${ALIGN_STORIES_MODEL:-${ALIGN_SHARED_MODELS:-../shared/models}/stories260K.gguf}
THREADS=${THREADS:-2}
METHODS=${METHODS:-dpo kto orpo simpo}
OUT=${OUT:-runs/bench-methods}
REPS=${REPS:-3}
BENCH_SEQ=${BENCH_SEQ:-128}
BENCH_PAIRS=${BENCH_PAIRS:-4}
BENCH_STEPS=${BENCH_STEPS:-8}
[ -f "$MODEL" ] || { echo "bench-methods: no $MODEL (set ALIGN_STORIES_MODEL or ALIGN_SHARED_MODELS)" >&2; exit 1; }
[ -x bin/align ] || go build -o bin/align ./cli/align
rm -rf "$OUT"
mkdir -p "$OUT"

# thumbs feedback with no prompt rated both ways, then align import --unpaired
python3 - testdata/stories/train.jsonl "$OUT/thumbs.jsonl" <<'PY'
import json, sys
pairs = [json.loads(l) for l in open(sys.argv[1])]
prompts = list(dict.fromkeys(p["prompt"] for p in pairs))  # some prompts have several pairs
liked = set(prompts[:len(prompts) // 2])  # these keep only chosen responses, the rest only rejected
with open(sys.argv[2], "w") as f:
    for p in pairs:
        up = p["prompt"] in liked
        f.write(json.dumps({"prompt": p["prompt"], "response": p["chosen"] if up else p["rejected"],
                            "rating": "up" if up else "down"}) + "\n")
PY
./bin/align import --feedback "$OUT/thumbs.jsonl" --unpaired --eval-fraction 0 \
  --out-train "$OUT/kto.jsonl" --out-eval "$OUT/kto-eval.jsonl"

LORA=(--lora-rank 16 --lora-alpha 32 --lora-targets q,k,v,o,gate,up,down --lr 5e-4 --threads "$THREADS")
declare -A DATA=([dpo]=testdata/stories/train.jsonl [kto]=$OUT/kto.jsonl [orpo]=testdata/stories/train.jsonl [simpo]=testdata/stories/train.jsonl)
declare -A EXTRA=([dpo]="--beta 0.1 --rpo-alpha 1" [kto]="--beta 0.1" [orpo]="" [simpo]="")
declare -A EPOCHS=([dpo]=${EPOCHS_DPO:-2} [kto]=${EPOCHS_KTO:-3} [orpo]=${EPOCHS_ORPO:-2} [simpo]=${EPOCHS_SIMPO:-2})
ran=()
adapters="base="
for m in $METHODS; do
  d=${DATA[$m]:-testdata/stories/train.jsonl}
  echo "== $m on $(wc -l < "$d") records of $d, ${EPOCHS[$m]:-2} epochs" >&2
  set +e
  # shellcheck disable=SC2086
  /usr/bin/time -f '%M %e' -o "$OUT/$m.time" ./bin/align train --method "$m" --model "$MODEL" --data "$d" \
    --eval-data testdata/stories/eval.jsonl --out "$OUT/$m" --epochs "${EPOCHS[$m]:-2}" "${LORA[@]}" ${EXTRA[$m]:-} \
    --json > "$OUT/$m.json" 2> "$OUT/$m.log"
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    if [ $rc -eq 2 ] && grep -q -- "--method must be one of" "$OUT/$m.log"; then
      echo "   skipped: this align has no --method $m" >&2
      continue
    fi
    cat "$OUT/$m.log" >&2
    exit $rc
  fi
  ran+=("$m")
  adapters+=",$m=$OUT/$m/adapter.gguf"
done
# step time: align bench train (the same sequences each step, warmed up,
# one thread), each method run at the same time as DPO so that both see
# the same load from other work on the machine; the median of REPS such
# ratios. A method bench train does not know shows n/a.
for m in "${ran[@]}"; do
  [ "$m" = dpo ] && continue
  for r in $(seq "$REPS"); do
    ./bin/align bench train --model "$MODEL" --method dpo --seq "$BENCH_SEQ" --pairs "$BENCH_PAIRS" --steps "$BENCH_STEPS" \
      --threads 1 --json > "$OUT/$m-dpo-bench$r.json" 2>/dev/null &
    ./bin/align bench train --model "$MODEL" --method "$m" --seq "$BENCH_SEQ" --pairs "$BENCH_PAIRS" --steps "$BENCH_STEPS" \
      --threads 1 --json > "$OUT/$m-bench$r.json" 2>/dev/null || rm -f "$OUT/$m-bench$r.json"
    wait $! || rm -f "$OUT/$m-dpo-bench$r.json"
  done
done
echo "== scoring samples of base and ${ran[*]}" >&2
ALIGN_SCORE_ADAPTERS=$adapters ALIGN_SHARED_MODELS=$(cd "$(dirname "$MODEL")" && pwd) ALIGN_REQUIRE_MODELS=1 \
  go test -count=1 -timeout 30m -run '^TestStoriesScore$' ./align/train/ -v > "$OUT/scores.txt" 2>&1 || { cat "$OUT/scores.txt" >&2; exit 1; }

REPS=$REPS python3 - "$OUT" "${ran[@]}" <<'PY'
import json, os, sys
sys_env = os.environ
out, methods = sys.argv[1], sys.argv[2:]
npairs = sum(1 for _ in open("testdata/stories/train.jsonl"))
nkto = sum(1 for _ in open(f"{out}/kto.jsonl"))
kind = {"kto": f"{nkto} unpaired (0 pairs)"}
scores, datafl = {}, None
for line in open(f"{out}/scores.txt"):
    f = line.split()
    if len(f) == 5 and f[0] == "score":
        scores[f[1]] = (float(f[2]), float(f[3]), float(f[4]))
    elif len(f) == 3 and f[0] == "score" and f[1] == "data-fluency":
        datafl = float(f[2])
rows = {}
for m in methods:
    s = json.load(open(f"{out}/{m}.json"))
    rss_kb, wall = open(f"{out}/{m}.time").read().split()
    ratios, ms = [], []
    for r in range(1, int(sys_env["REPS"]) + 1):
        try:
            own = json.load(open(f"{out}/{m}-bench{r}.json"))["step_ms"]
            dpo = json.load(open(f"{out}/{m}-dpo-bench{r}.json"))["step_ms"]
        except (OSError, ValueError):
            continue
        ratios.append(own / dpo)
        ms.append(own)
    ratios.sort()
    rows[m] = dict(acc=s["eval_after"].get("rewards/accuracies", float("nan")), steps=s["steps"],
                   ratio=1.0 if m == "dpo" else (ratios[len(ratios) // 2] if ratios else None),
                   step_ms=sorted(ms)[len(ms) // 2] if ms else None, rss=int(rss_kb) / 1024)
ref = rows.get("dpo")
b = scores["base"]
print(f"stories260K; base samples: cheerful {b[0]:.2f}, fluency {b[1]:.3f} nats/token; held-out chosen continuations {datafl:.3f}")
print("| method | data | held-out accuracy | cheerful share | fluency | step time ÷ DPO | peak RSS ÷ DPO |")
print("|---|---|---|---|---|---|---|")
for m in methods:
    r, sc = rows[m], scores[m]
    if r["ratio"] is None:
        st = "n/a (not in align bench train)"
    elif m == "dpo":
        st = "1.00"
    else:
        st = f"{r['ratio']:.2f} ({r['step_ms']:.0f} ms/step at 1 thread)"
    rs = f"{r['rss'] / ref['rss']:.2f} ({r['rss']:.0f} MiB)" if ref else f"{r['rss']:.0f} MiB"
    print(f"| {m} | {kind.get(m, f'{npairs} pairs')} | {r['acc']:.3f} | {sc[0]:.2f} | {sc[1]:.3f} | {st} | {rs} |")
PY
