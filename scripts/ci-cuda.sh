#!/usr/bin/env bash
# The CUDA half of CI (DESIGN §3), ready for .ci/run once a full `make cuda`
# has been seen to link here: install Debian's CUDA toolkit when absent,
# compile ggml-cuda (one architecture, sm_90) with our patch, link the CUDA
# bin/align and the native GPU driver, and check that this binary still
# starts and trains on the CPU of a machine with no GPU and no NVIDIA driver.
set -euo pipefail
cd "$(dirname "$0")/.."
t=$(date +%s)
make cuda CUDA_ARCH=90
echo "ci: make cuda took $(( $(date +%s) - t )) s" >&2
scripts/gpu-check.sh --cpu-smoke
