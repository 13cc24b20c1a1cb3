#!/usr/bin/env bash
# The CUDA half of CI (issue 12 item 5): install Debian's CUDA toolkit when
# absent (scripts/deps.sh --cuda), compile ggml-cuda for one architecture
# (sm_90) with our patches, link the CUDA bin/align and the native GPU driver
# align_gpu, and check that this binary still starts and trains on the CPU
# of a machine with no GPU and no NVIDIA driver.
#
# CI leaves out ggml's MMQ and mmf template instances (CUDA_MMQ=none
# CUDA_MMF=OFF): upstream kernels that none of our code is in, and with them
# the build had not finished after 39 minutes on 2 cores (856 s without,
# cold ccache).
# A user's `make cuda` builds them (CUDA_MMQ=trained, CUDA_MMF=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
t=$(date +%s)
make cuda CUDA_ARCH=90 CUDA_MMQ=none CUDA_MMF=OFF
echo "ci: make cuda took $(( $(date +%s) - t )) s" >&2
scripts/gpu-check.sh --cpu-smoke
