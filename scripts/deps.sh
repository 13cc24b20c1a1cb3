#!/usr/bin/env bash
# Installs the system packages the build needs when they are missing
# (Debian/Ubuntu). Idempotent and quiet when everything is present.
# With --test it also installs chromium for the report's screenshot test
# (best effort: without it that one test skips).
set -euo pipefail

if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 && exit 0
  SUDO=""
  [ "$(id -u)" -ne 0 ] && { command -v sudo >/dev/null 2>&1 && SUDO="sudo" || exit 0; }
  echo "align: installing chromium (report screenshot test) ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
    echo "align: could not install chromium; the screenshot test will skip" >&2
  fi
  exit 0
fi

# --cuda: a CUDA toolkit (nvcc) for `make cuda` and CI's CUDA compile. On
# Debian bookworm that is non-free's nvidia-cuda-toolkit 11.8 (DESIGN §3): the
# component is added in a sources file of its own that names bookworm only, so
# nothing else on the machine changes; CUDA 11.8 needs g++-11 as nvcc's host
# compiler (bookworm's default g++ is 12). Elsewhere it installs what the
# distribution calls nvidia-cuda-toolkit (Ubuntu: multiverse) or says what to do.
if [ "${1:-}" = "--cuda" ]; then
  # the CUDA build applies native/patches with patch(1)
  if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
    command -v patch >/dev/null 2>&1 && exit 0
    need_toolkit=0
  else
    need_toolkit=1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "align: need root (or sudo) to install the CUDA toolkit (nvidia-cuda-toolkit)" >&2
      exit 1
    fi
  fi
  . /etc/os-release 2>/dev/null || true
  export DEBIAN_FRONTEND=noninteractive
  pkgs=()
  command -v patch >/dev/null 2>&1 || pkgs+=(patch)
  if [ "$need_toolkit" = 0 ]; then
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    exit 0
  fi
  pkgs+=(nvidia-cuda-toolkit)
  if [ "${ID:-}" = "debian" ] && [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
    src=/etc/apt/sources.list.d/align-cuda-nonfree.sources
    if [ ! -f "$src" ]; then
      printf '%s\n' \
        "# added by align scripts/deps.sh --cuda: nvidia-cuda-toolkit (non-free)" \
        "Types: deb" \
        "URIs: http://deb.debian.org/debian" \
        "Suites: bookworm" \
        "Components: contrib non-free" \
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" | $SUDO tee "$src" >/dev/null
    fi
    pkgs+=(g++-11)
  elif [ "${ID:-}" != "ubuntu" ]; then
    echo "align: no CUDA toolkit (nvcc) found; install one (https://developer.nvidia.com/cuda-downloads) and put nvcc on PATH" >&2
    exit 1
  fi
  echo "align: installing ${pkgs[*]} (about 3 GB) ..." >&2
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  echo "align: installed $(nvcc --version | tail -n 2 | head -n 1)" >&2
  exit 0
fi

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v g++ >/dev/null 2>&1 || need+=(g++)

if ! command -v go >/dev/null 2>&1; then
  echo "align: Go is not installed (need Go 1.24 or newer on PATH)" >&2
  exit 1
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "align: installing ${need[*]} ..." >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "align: need root (or sudo) to install: ${need[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "align: installed ${need[*]}" >&2
