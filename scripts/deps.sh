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
