#!/usr/bin/env bash
# The demo on embedded defaults: a tiny random-weight model, then sampling
# from it. (Training arrives with the training engine.)
set -euo pipefail
cd "$(dirname "$0")/.."
M=models/tiny-q8_0.gguf
echo "== model"
./bin/align model info --model "$M"
echo "== sample (seed 1, twice: same output)"
./bin/align sample --model "$M" --prompt "Is Berserk finished?" --seed 1 -n 24
./bin/align sample --model "$M" --prompt "Is Berserk finished?" --seed 1 -n 24
echo "== sample --json"
./bin/align sample --model "$M" --prompt "hi" --seed 1 -n 16 --json
