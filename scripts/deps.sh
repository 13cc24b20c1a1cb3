#!/usr/bin/env bash
# Installs the system packages the build needs when they are missing
# (Debian/Ubuntu). Idempotent and quiet when everything is present.
set -euo pipefail

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
