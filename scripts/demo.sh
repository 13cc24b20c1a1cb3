#!/usr/bin/env bash
# make demo: the main job on embedded defaults. A tiny random-weight model,
# DPO (with an RPO term) on the shipped synthetic manga-assistant pairs,
# held-out metrics before and after, the exported adapter, and samples with
# and without it.
set -euo pipefail
cd "$(dirname "$0")/.."
M=models/tiny-q8_0.gguf
RUN=runs/demo-dpo
echo "== model"
./bin/align model info --model "$M"
echo
echo "== data: $(wc -l < testdata/pairs/train.jsonl) training and $(wc -l < testdata/pairs/eval.jsonl) held-out pairs (tone, accuracy, escalation, safety)"
./bin/align data stats --in testdata/pairs/train.jsonl 2>/dev/null | head -5 || true
echo
echo "== train: DPO with per-objective beta (safety 0.05, tone 0.1, escalation 0.1, accuracy 0.3)"
rm -rf "$RUN"
./bin/align train --method dpo --rpo-alpha 1 --model "$M" \
  --data testdata/pairs/train.jsonl --eval-data testdata/pairs/eval.jsonl --out "$RUN" \
  --epochs 2 --lr 3e-3 --lora-rank 16 --lora-alpha 32 --lora-targets q,k,v,o,gate,up,down
echo
echo "== samples (seed 1): base model, then base + adapter"
for p in "Is Berserk finished? How many volumes are out?" \
         "My order is late AGAIN. Third time I'm writing. This is ridiculous." \
         "Can you recommend a manga for my 9 year old?"; do
  echo "prompt: $p"
  printf '  base:    '; ./bin/align sample --model "$M" --prompt "$p" --seed 1 -n 40 --temp 0.7 2>/dev/null
  printf '  adapter: '; ./bin/align sample --model "$M" --lora "$RUN/adapter.gguf" --prompt "$p" --seed 1 -n 40 --temp 0.7 2>/dev/null
done
echo
echo "== eval: held-out prompts, base vs adapter, rules judge"
./bin/align eval --model "$M" --lora "$RUN/adapter.gguf" --prompts testdata/prompts/sample.jsonl \
  --judge rules:testdata/catalog.json --pairs testdata/pairs/eval.jsonl --samples 4 --seed 1 -n 48 --out "$RUN/eval"
./bin/align report "$RUN" --eval "$RUN/eval/eval.json" --out "$RUN/report"
echo "report: $RUN/report/index.html (opens offline)"
echo
echo "The base is random weights (a tiny fixture), so its text is noise; the adapter learned the"
echo "preferred phrasing of each objective. Metrics: $RUN/metrics.jsonl; adapter: $RUN/adapter.gguf"
echo "(llama.cpp/ollama load it as is: llama-cli -m $M --lora $RUN/adapter.gguf)."
