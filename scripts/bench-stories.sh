#!/usr/bin/env bash
# The settings table of testdata/stories/README.md: DPO on a real story
# model (../shared/models) with cheerful-over-sad pairs, one row per
# setting (lr, rank, targets, β, epochs, RPO α), each scored by sampling
# (cheerful and sad shares, fluency, non-words). Minutes per row.
#   MODEL: stories260K.gguf (default) or TinyStories-656K-Q8_0.gguf
#   ROWS:  rows of BenchmarkStoriesSweep's table, e.g. 0,8,1,2,3,4 (default all)
# e.g. MODEL=TinyStories-656K-Q8_0.gguf ROWS=0,1,2 scripts/bench-stories.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/native/libalign_native.a ] || make native
stamp=$(cat build/native/libalign_native.a build/libllama.a build/ggml/*.a | sha1sum | cut -c1-16)
CGO_ENABLED=1 CGO_CPPFLAGS="-DALIGN_NATIVE_STAMP=$stamp" \
  ALIGN_STORIES_MODEL=${MODEL:-} ALIGN_STORIES_ROWS=${ROWS:-} ALIGN_REQUIRE_MODELS=1 \
  go test -count=1 -timeout 0 -run '^$' -bench '^BenchmarkStoriesSweep$' -benchtime 1x -v ./align/train
