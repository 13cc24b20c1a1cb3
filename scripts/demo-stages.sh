#!/usr/bin/env bash
# make demo-stages: the design document's two stages. SFT on the preferred
# responses, then DPO against the SFT model (--ref-adapter: the reference is
# base + the SFT adapter; the policy starts there, so step 0's margins are
# exactly 0), then the result folded into the base with align merge.
# On the real story model of ../shared/models when it is there (cheerful vs
# sad continuations, testdata/stories/), else on the tiny random fixture with
# the manga pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${ALIGN_SHARED_MODELS:-../shared/models}
if [ -f "$SHARED/stories260K.gguf" ]; then
  M=$SHARED/stories260K.gguf
  TRAIN=testdata/stories/train.jsonl EVAL=testdata/stories/eval.jsonl
  PROMPTS=("Once upon a time, there was a little mouse named Joe. One day, Joe went to the lake."
           "Ella and a friend went to the meadow. They saw a yellow hat under a tree.")
  LORA=(--lora-rank 16 --lora-alpha 32 --lora-targets q,k,v,o,gate,up,down)
  SFT_ARGS=(--epochs 1 --lr 2e-3) DPO_ARGS=(--epochs 2 --lr 5e-4 --beta 0.1 --rpo-alpha 1)  # testdata/stories/README.md
  RAW=(--raw)
  echo "== model: stories260K (real, pretrained; see $SHARED/README.md)"
else
  M=models/tiny-q8_0.gguf
  TRAIN=testdata/pairs/train.jsonl EVAL=testdata/pairs/eval.jsonl
  PROMPTS=("Is Berserk finished? How many volumes are out?" "My order is late AGAIN. Third time I'm writing. This is ridiculous.")
  LORA=(--lora-rank 16 --lora-alpha 32 --lora-targets q,k,v,o,gate,up,down)
  SFT_ARGS=(--epochs 1 --lr 3e-3) DPO_ARGS=(--epochs 2 --lr 3e-3 --rpo-alpha 1)
  RAW=()
  echo "== model: tiny random fixture ($SHARED/stories260K.gguf not found)"
fi
SFT=runs/stages-sft DPO=runs/stages-dpo MERGED=runs/stages-merged.gguf
rm -rf "$SFT" "$DPO" "$MERGED"
echo
echo "== stage 1: SFT on the chosen responses"
./bin/align train --method sft --model "$M" --data "$TRAIN" --eval-data "$EVAL" --out "$SFT" "${LORA[@]}" "${SFT_ARGS[@]}"
echo
echo "== stage 2: DPO against the SFT model (--ref-adapter; rank, alpha and targets come from the adapter)"
./bin/align train --method dpo --model "$M" --data "$TRAIN" --eval-data "$EVAL" --out "$DPO" \
  --ref-adapter "$SFT/adapter.gguf" "${DPO_ARGS[@]}"
echo
echo "== merge: base + the DPO run's adapter (which holds both stages) into one model"
./bin/align merge --model "$M" --lora "$DPO/adapter.gguf" --out "$MERGED"
echo
echo "== samples (seed 1): base, SFT, SFT then DPO, and the merged model"
for p in "${PROMPTS[@]}"; do
  echo "prompt: $p"
  printf '  base:   '; ./bin/align sample --model "$M" "${RAW[@]}" --prompt "$p" --seed 1 -n 40 --temp 0.7 2>/dev/null
  printf '  sft:    '; ./bin/align sample --model "$M" "${RAW[@]}" --lora "$SFT/adapter.gguf" --prompt "$p" --seed 1 -n 40 --temp 0.7 2>/dev/null
  printf '  dpo:    '; ./bin/align sample --model "$M" "${RAW[@]}" --lora "$DPO/adapter.gguf" --prompt "$p" --seed 1 -n 40 --temp 0.7 2>/dev/null
  printf '  merged: '; ./bin/align sample --model "$MERGED" "${RAW[@]}" --prompt "$p" --seed 1 -n 40 --temp 0.7 2>/dev/null
done
echo
echo "The DPO run's held-out 'before' line shows margin +0.0000: the policy started as the SFT model,"
echo "which is its reference. $DPO/adapter.gguf alone (llama.cpp: --lora) is the final policy;"
echo "$MERGED is the same model with the adapter folded in."
