#!/usr/bin/env bash
# make demo-methods: most feedback is unpaired. From the stories pairs
# (testdata/stories: cheerful over sad endings) it makes thumbs feedback
# in which no prompt has both a liked and a disliked response, shows that
# pairing it makes nothing (align import), trains KTO on it as unpaired
# examples (align import --unpaired) and DPO on the full pairs, and
# prints both side by side: held-out pair accuracy, the cheerful share of
# samples and their fluency under the base (scripts/bench-methods.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/demo-methods}
mkdir -p "$OUT"
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
echo "== $(wc -l < "$OUT/thumbs.jsonl") thumbs up/down, no prompt rated both ways: pairing finds nothing"
./bin/align import --feedback "$OUT/thumbs.jsonl" --eval-fraction 0 --out-train "$OUT/pairs.jsonl" --out-eval "$OUT/pairs-eval.jsonl"
echo
echo "== KTO on the same feedback, unpaired, against DPO on the 400 full pairs (minutes on 2 cores)"
METHODS=${METHODS:-dpo kto} OUT="$OUT/bench" scripts/bench-methods.sh
