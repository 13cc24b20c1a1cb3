// Package engine drives the native core through bindings: quick generation
// (sample), fixtures and, later, training. It is the only align package that
// imports bindings (and so needs cgo).
package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/align-dev/align/bindings"
)

// Adapter names a LoRA file and its user scale.
type Adapter struct {
	Path  string
	Scale float32
}

// ParseAdapter parses FILE or FILE:SCALE (the scale defaults to 1).
func ParseAdapter(spec string) (Adapter, error) {
	if spec == "" {
		return Adapter{}, errors.New("empty adapter")
	}
	if i := strings.LastIndexByte(spec, ':'); i > 0 && i < len(spec)-1 {
		if f, err := strconv.ParseFloat(spec[i+1:], 32); err == nil {
			return Adapter{Path: spec[:i], Scale: float32(f)}, nil
		}
	}
	return Adapter{Path: spec, Scale: 1}, nil
}

// SampleRequest is one generation.
type SampleRequest struct {
	Model    string
	Adapters []Adapter
	Prompt   string
	System   string
	Raw      bool // do not apply the chat template
	Sampler  bindings.SamplerParams
	Threads  int
	NCtx     int
	NoMmap   bool
	OnText   func(string) bool // streaming; may be nil
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
	m, err := bindings.LoadModel(req.Model, bindings.ModelOptions{Threads: req.Threads, NoMmap: req.NoMmap})
	if err != nil {
		return SampleResult{}, err
	}
	defer m.Close()
	var adapters []bindings.LoRAScale
	for _, a := range req.Adapters {
		l, err := bindings.LoadLoRA(m, a.Path)
		if err != nil {
			return SampleResult{}, err
		}
		defer l.Close()
		adapters = append(adapters, bindings.LoRAScale{LoRA: l, Scale: a.Scale})
	}
	info, err := m.Info()
	if err != nil {
		return SampleResult{}, err
	}
	text, templated, err := FormatPrompt(m, info, req.System, req.Prompt, req.Raw)
	if err != nil {
		return SampleResult{}, err
	}
	tokens, err := m.Tokenize(text, true, templated)
	if err != nil {
		return SampleResult{}, err
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
	res, err := s.Generate(ctx, tokens, req.Sampler, func(t string) bool {
		sb.WriteString(t)
		if req.OnText != nil {
			return req.OnText(t)
		}
		return true
	})
	out := SampleResult{
		Text: sb.String(), PromptTokens: res.PromptTokens, GeneratedTokens: res.GeneratedTokens,
		StopReason: stopNames[res.StopReason], PromptMS: res.PromptMS, GenerateMS: res.GenerateMS,
		Seed: req.Sampler.Seed, Templated: templated,
	}
	if res.PromptMS > 0 {
		out.PromptTPS = float64(res.PromptTokens) / (res.PromptMS / 1000)
	}
	if res.GenerateMS > 0 {
		out.TPS = float64(res.GeneratedTokens) / (res.GenerateMS / 1000)
	}
	return out, err
}

// FormatPrompt applies the model's chat template unless raw is set or the
// model has none; templated reports whether it did (control-token text is
// then parsed as control tokens).
func FormatPrompt(m *bindings.Model, info bindings.ModelInfo, system, prompt string, raw bool) (string, bool, error) {
	if raw || !info.HasChatTemplate {
		if system != "" {
			return system + "\n\n" + prompt, false, nil
		}
		return prompt, false, nil
	}
	var msgs []bindings.Message
	if system != "" {
		msgs = append(msgs, bindings.Message{Role: "system", Content: system})
	}
	msgs = append(msgs, bindings.Message{Role: "user", Content: prompt})
	text, err := m.ChatApply("", msgs, true)
	if err != nil {
		return "", false, fmt.Errorf("chat template: %w (use --raw)", err)
	}
	return text, true, nil
}

// InitModel writes a fixture model.
func InitModel(path string, p bindings.FixtureParams) error {
	return bindings.WriteFixture(path, p)
}
