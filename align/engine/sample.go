// Package engine drives the native core through bindings for the commands:
// quick generation (sample), model inspection and fixtures, and the native
// log. Commands reach bindings only through it.
package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/bindings"
)

// Adapter names a LoRA file and its user scale.
type Adapter struct {
	Path  string
	Scale float32
}

// ParseAdapter parses FILE or FILE:SCALE (the scale defaults to 1). A spec
// whose part after the last colon is not a number is a file name only when
// that whole file exists; otherwise the scale is reported as bad.
func ParseAdapter(spec string) (Adapter, error) {
	if spec == "" {
		return Adapter{}, errors.New("empty adapter")
	}
	i := strings.LastIndexByte(spec, ':')
	if i <= 0 {
		return Adapter{Path: spec, Scale: 1}, nil
	}
	path, scale := spec[:i], spec[i+1:]
	f, err := strconv.ParseFloat(scale, 32)
	if err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return Adapter{}, fmt.Errorf("scale %q is not a finite number", scale)
		}
		return Adapter{Path: path, Scale: float32(f)}, nil
	}
	if errors.Is(err, strconv.ErrRange) { // e.g. 1e40: a number, too large for a float32 scale
		return Adapter{}, fmt.Errorf("scale %q is out of range (a LoRA scale is at most %.1e in size)", scale, math.MaxFloat32)
	}
	if _, serr := os.Stat(spec); serr == nil {
		return Adapter{Path: spec, Scale: 1}, nil // a file name with a colon
	}
	if scale == "" {
		return Adapter{}, fmt.Errorf("missing scale after %q (use FILE or FILE:SCALE)", path+":")
	}
	return Adapter{}, fmt.Errorf("scale %q is not a number (use FILE or FILE:SCALE)", scale)
}

// Sampler chooses how tokens are drawn.
type Sampler struct {
	Temperature float32 // <= 0: greedy
	TopP        float32 // 1: off
	TopK        int     // <= 0: off
	MinP        float32 // 0: off
	Seed        uint32
	MaxTokens   int
	Stop        []string // output ends before the first occurrence
}

// SampleRequest is one generation.
type SampleRequest struct {
	Model    string
	Adapters []Adapter
	Prompt   string
	System   string
	Raw      bool // do not apply the chat template (align/prompt's plain format)
	// ChatTemplate replaces the model's chat template (--chat-template
	// FILE's text); TemplateKwargs are extra template variables
	// (--chat-template-kwargs).
	ChatTemplate   string
	TemplateKwargs map[string]any
	Sampler        Sampler
	Threads        int
	NCtx           int
	NoMmap         bool
	OnText         func(string) bool // streaming; may be nil
	// OnWarning receives one line per problem worth telling the user (such
	// as characters the vocabulary cannot spell); may be nil.
	OnWarning func(string)
}

// SampleResult reports a generation.
type SampleResult struct {
	Text            string  `json:"text"`
	PromptTokens    int     `json:"prompt_tokens"`
	GeneratedTokens int     `json:"generated_tokens"`
	StopReason      string  `json:"stop_reason"`
	PromptMS        float64 `json:"prompt_ms"`
	GenerateMS      float64 `json:"generate_ms"`
	PromptTPS       float64 `json:"prompt_tokens_per_s"`
	TPS             float64 `json:"tokens_per_s"`
	Seed            uint32  `json:"seed"`
	Templated       bool    `json:"chat_template"`
	UnknownChars    int     `json:"unknown_chars"` // prompt characters that became <unk>
}

var stopNames = map[int]string{
	bindings.StopMaxTokens: "max_tokens",
	bindings.StopEOG:       "eog",
	bindings.StopString:    "stop_string",
	bindings.StopCallback:  "callback",
	bindings.StopContext:   "context_full",
}

// Sample loads the model (and adapters), formats the prompt and generates.
func Sample(ctx context.Context, req SampleRequest) (SampleResult, error) {
	m, err := LoadModel(req.Model, bindings.ModelOptions{Threads: req.Threads, NoMmap: req.NoMmap})
	if err != nil {
		return SampleResult{}, err
	}
	defer m.Close()
	var adapters []bindings.LoRAScale
	for _, a := range req.Adapters {
		l, err := LoadLoRA(m, a.Path)
		if err != nil {
			return SampleResult{}, err
		}
		defer l.Close() // after the session: defers run last-in first-out
		adapters = append(adapters, bindings.LoRAScale{LoRA: l, Scale: a.Scale})
	}
	info, err := m.Info()
	if err != nil {
		return SampleResult{}, err
	}
	tokens, unspelled, templated, err := SamplePromptWith(m, req.System, req.Prompt, prompt.Options{
		Raw: req.Raw, Template: req.ChatTemplate, Kwargs: req.TemplateKwargs, OnWarning: req.OnWarning,
	})
	if err != nil {
		return SampleResult{}, err
	}
	if w := unspelled.Warning("prompt"); w != "" && req.OnWarning != nil {
		req.OnWarning(w)
	}
	if len(tokens) == 0 {
		return SampleResult{}, errors.New("the prompt is empty after tokenisation")
	}
	nctx := req.NCtx
	if nctx <= 0 {
		nctx = len(tokens) + req.Sampler.MaxTokens + 1
		if nctx < 512 {
			nctx = 512
		}
		if info.NCtxTrain > 0 && nctx > info.NCtxTrain {
			nctx = info.NCtxTrain
		}
	}
	if len(tokens) >= nctx {
		return SampleResult{}, fmt.Errorf("prompt has %d tokens; the context holds %d (raise --ctx-size)", len(tokens), nctx)
	}
	s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: nctx, Threads: req.Threads, Adapters: adapters})
	if err != nil {
		return SampleResult{}, err
	}
	defer s.Close()
	var sb strings.Builder
	sp := bindings.SamplerParams{
		Temperature: req.Sampler.Temperature, TopP: req.Sampler.TopP, TopK: req.Sampler.TopK, MinP: req.Sampler.MinP,
		Seed: req.Sampler.Seed, MaxTokens: req.Sampler.MaxTokens, Stop: req.Sampler.Stop,
	}
	res, err := s.Generate(ctx, tokens, sp, func(t string) bool {
		sb.WriteString(t)
		if req.OnText != nil {
			return req.OnText(t)
		}
		return true
	})
	out := SampleResult{
		Text: sb.String(), PromptTokens: res.PromptTokens, GeneratedTokens: res.GeneratedTokens,
		StopReason: stopNames[res.StopReason], PromptMS: res.PromptMS, GenerateMS: res.GenerateMS,
		Seed: req.Sampler.Seed, Templated: templated, UnknownChars: unspelled.Count,
	}
	if res.PromptMS > 0 {
		out.PromptTPS = float64(res.PromptTokens) / (res.PromptMS / 1000)
	}
	if res.GenerateMS > 0 {
		out.TPS = float64(res.GeneratedTokens) / (res.GenerateMS / 1000)
	}
	return out, err
}

// SamplePrompt is the prompt Sample decodes: system and user formatted by
// align/prompt (the chat template unless raw or the model has none) and
// tokenized; templated reports whether the template was applied.
func SamplePrompt(m *bindings.Model, system, user string, raw bool) ([]int32, prompt.Unspelled, bool, error) {
	return SamplePromptWith(m, system, user, prompt.Options{Raw: raw})
}

// SamplePromptWith is SamplePrompt under template options (--chat-template,
// --chat-template-kwargs).
func SamplePromptWith(m *bindings.Model, system, user string, o prompt.Options) ([]int32, prompt.Unspelled, bool, error) {
	f, err := NewFormatter(m, o)
	if err != nil {
		return nil, prompt.Unspelled{}, false, err
	}
	tokens, u, err := f.EncodePrompt(prompt.Conversation(system, user))
	if err != nil && f.Templated() {
		err = fmt.Errorf("%w (or use --raw)", err)
	}
	return tokens, u, f.Templated(), err
}

// NewFormatter is align/prompt's formatter for a loaded model under o: the
// one place train, sample, tokenize, eval, rollouts and local judges get
// theirs.
func NewFormatter(m *bindings.Model, o prompt.Options) (*prompt.Formatter, error) {
	pm, err := PromptModel(m)
	if err != nil {
		return nil, err
	}
	return prompt.NewWith(pm, o)
}
