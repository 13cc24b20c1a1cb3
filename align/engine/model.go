package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/align-dev/align/bindings"
)

// SetNativeLog routes llama.cpp/ggml/align log text to fn (nil: silence).
func SetNativeLog(fn func(text string)) {
	if fn == nil {
		bindings.SetLogger(nil)
		return
	}
	bindings.SetLogger(func(_ int, text string) { fn(text) })
}

// LoadModel loads a GGUF model; a LoRA adapter given as the model is
// reported as such, with the flag that takes it.
func LoadModel(path string, opt bindings.ModelOptions) (*bindings.Model, error) {
	m, err := bindings.LoadModel(path, opt)
	if err != nil && strings.Contains(err.Error(), "is a LoRA adapter, not a model") {
		return nil, fmt.Errorf("%w; give adapters with --lora", err)
	}
	return m, err
}

// LoadLoRA loads an adapter for m; a model given as the adapter is reported
// as such, with the flag that takes it.
func LoadLoRA(m *bindings.Model, path string) (*bindings.LoRA, error) {
	l, err := bindings.LoadLoRA(m, path)
	if err != nil && strings.Contains(err.Error(), "is a model, not a LoRA adapter") {
		return nil, fmt.Errorf("%w; give the base model with --model", err)
	}
	return l, err
}

// ModelInfo describes a model file; JSON keys are snake_case like the rest
// of align's output.
type ModelInfo struct {
	Path            string `json:"path"`
	Desc            string `json:"desc"` // arch, parameter count, weight type
	Arch            string `json:"arch"`
	NVocab          int    `json:"n_vocab"`
	NCtxTrain       int    `json:"n_ctx_train"`
	NEmbd           int    `json:"n_embd"`
	NLayer          int    `json:"n_layer"`
	NParams         uint64 `json:"n_params"`
	SizeBytes       uint64 `json:"size_bytes"`
	BOS             int32  `json:"bos"`
	EOS             int32  `json:"eos"`
	EOT             int32  `json:"eot"` // end of turn (-1: none)
	AddBOS          bool   `json:"add_bos"`
	HasChatTemplate bool   `json:"chat_template"`
}

// DescribeModel reads a model file's description (the weights are mapped,
// not read).
func DescribeModel(path string) (ModelInfo, error) {
	m, err := LoadModel(path, bindings.ModelOptions{})
	if err != nil {
		return ModelInfo{}, err
	}
	defer m.Close()
	bi, err := m.Info()
	if err != nil {
		return ModelInfo{}, err
	}
	return ModelInfo{
		Path: path, Desc: describe(bi.Desc, bi.NParams), Arch: bi.Arch, NVocab: bi.NVocab, NCtxTrain: bi.NCtxTrain,
		NEmbd: bi.NEmbd, NLayer: bi.NLayer, NParams: bi.NParams, SizeBytes: bi.SizeBytes, BOS: bi.BOS, EOS: bi.EOS, EOT: bi.EOT,
		AddBOS: bi.AddBOS, HasChatTemplate: bi.HasChatTemplate,
	}, nil
}

// describe fixes llama.cpp's one-line description, which says "?B" for a
// size it has no name for (every small model): the count is written out.
func describe(desc string, nParams uint64) string {
	return strings.Replace(desc, "?B", HumanCount(nParams), 1)
}

// HumanCount writes a parameter count the way model names do: 2.8M, 135M,
// 1.2B.
func HumanCount(n uint64) string {
	f := float64(n)
	switch {
	case n >= 1e9:
		return trimZero(fmt.Sprintf("%.1f", f/1e9)) + "B"
	case n >= 1e6:
		if n >= 1e8 {
			return fmt.Sprintf("%.0fM", f/1e6)
		}
		return trimZero(fmt.Sprintf("%.1f", f/1e6)) + "M"
	case n >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", f/1e3)) + "K"
	}
	return fmt.Sprint(n)
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }

// FixtureParams describe a generated test model.
type FixtureParams struct {
	Arch       string // "llama", "qwen2", "qwen3" or "gemma3"
	Type       string // "f32", "f16", "q8_0", "q4_0", "q4_k"
	Size       string // "tiny", "small" or a name of Shapes
	Seed       uint64
	TiedOutput bool
	Llama3Rope bool
	Layers     int         // > 0: this many layers instead of the preset's
	Vocab      *Vocabulary // a real tokenizer's (ReadHFTokenizer); nil: the built-in test vocabulary
}

// Shapes are the published models' shapes `model init --shape` writes, by
// name, with the architecture each needs.
var Shapes = map[string]string{
	"llama3-1b":  "llama",
	"llama3-8b":  "llama",
	"qwen3-0.6b": "qwen3",
	"gemma3-1b":  "gemma3",
}

// ShapeNames lists Shapes' names in order.
func ShapeNames() []string {
	return []string{"llama3-1b", "llama3-8b", "qwen3-0.6b", "gemma3-1b"}
}

// InitModel writes a fixture model to path, whose folder must exist.
func InitModel(path string, p FixtureParams) error {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: folder %s does not exist", path, dir)
		}
		return fmt.Errorf("%s: %w", path, err)
	} else if !st.IsDir() {
		return fmt.Errorf("%s: %s is not a folder", path, dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a folder; give a file name", path)
	}
	bp := bindings.FixtureParams{
		Arch: p.Arch, Type: p.Type, Size: p.Size, Seed: p.Seed, TiedOutput: p.TiedOutput, Llama3Rope: p.Llama3Rope,
		NLayer: p.Layers,
	}
	if v := p.Vocab; v != nil {
		bp.Vocab = &bindings.FixtureVocab{
			Model: v.Model, Pre: v.Pre, Tokens: v.Tokens, Scores: v.Scores, Types: v.Types, Merges: v.Merges,
			BOS: v.BOS, EOS: v.EOS, EOT: v.EOT, UNK: v.UNK, PAD: v.PAD, AddBOS: v.AddBOS, AddEOS: v.AddEOS,
			AddSpacePrefix: v.AddSpacePrefix, ChatTemplate: v.ChatTemplate,
		}
	}
	return bindings.WriteFixture(path, bp)
}
