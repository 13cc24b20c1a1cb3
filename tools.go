//go:build tools

// Package tools pins github.com/ollama/ollama: CMake builds ggml and
// llama.cpp from this module's directory (go list -m), so it must stay in
// go.mod and go.sum even though no Go code of ours imports it.
package tools

import _ "github.com/ollama/ollama/fs/gguf"
