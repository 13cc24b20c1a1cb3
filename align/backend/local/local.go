//go:build cgo

// Package local implements backend.Generator, Structurer, Judge and
// Screener over a GGUF model run in-process through align's bindings to
// llama.cpp: prompts formatted by align/prompt exactly as training and
// `align sample` format them (the model's chat template, or the plain
// format when it has none or Options.Raw is set), temperature and top-p sampling with a seed, and structured calls
// constrained by a GBNF grammar derived from the request's JSON schema, so
// judge and screen outputs always parse.
package local

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"path/filepath"
	"strings"
	"sync"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/bindings"
)

// Backend runs one local model. Safe for concurrent use: calls queue for
// one of Options.Parallel sessions.
type Backend struct {
	model    *bindings.Model
	info     bindings.ModelInfo
	format   *prompt.Formatter
	name     string
	opts     Options
	sessions chan *bindings.Session
	warnOnce sync.Once
	jsonOnce sync.Once
	jsonErr  error

	mu     sync.Mutex
	closed bool
	all    []*bindings.Session
}

var (
	_ backend.Generator  = (*Backend)(nil)
	_ backend.Structurer = (*Backend)(nil)
	_ backend.Judge      = (*Backend)(nil)
	_ backend.Screener   = (*Backend)(nil)
)

// Open loads the model at path and creates its sessions. Close frees them.
func Open(path string, opts Options) (*Backend, error) {
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = 512
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 1
	}
	if opts.StringLimit <= 0 {
		opts.StringLimit = 160
	}
	m, err := bindings.LoadModel(path, bindings.ModelOptions{Threads: opts.Threads, GPULayers: opts.GPULayers})
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	info, err := m.Info()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("local: %w", err)
	}
	if opts.NCtx <= 0 {
		opts.NCtx = 4096
		if info.NCtxTrain > 0 && info.NCtxTrain < opts.NCtx {
			opts.NCtx = info.NCtxTrain
		}
	}
	pm, err := engine.PromptModel(m)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("local: %w", err)
	}
	f, err := prompt.NewWith(pm, prompt.Options{Raw: opts.Raw, Template: opts.Template, Kwargs: opts.Kwargs, OnWarning: opts.Warn})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("local: %w", err)
	}
	if f.Templated() {
		if _, err := f.Prompt(prompt.Conversation("s", "u")); err != nil {
			if opts.Template != "" {
				m.Close()
				return nil, fmt.Errorf("local: %w", err)
			}
			// a template the model carries that no renderer can render:
			// use the plain format, as training with --raw does
			f = prompt.New(pm, true)
		}
	}
	b := &Backend{model: m, info: info, format: f, name: "local:" + filepath.Base(path), opts: opts, sessions: make(chan *bindings.Session, opts.Parallel)}
	for i := 0; i < opts.Parallel; i++ {
		s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: opts.NCtx, Threads: opts.Threads})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("local: %w", err)
		}
		b.all = append(b.all, s)
		b.sessions <- s
	}
	return b, nil
}

// Close frees the sessions and the model. Calls must have returned.
// Idempotent.
func (b *Backend) Close() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, s := range b.all {
		s.Close()
	}
	return b.model.Close()
}

// Model is the name responses report: "local:<file name>".
func (b *Backend) Model() string { return b.name }

// Format renders a conversation as the model's prompt text (align/prompt)
// and reports whether the chat template was applied (control tokens are
// then parsed).
func (b *Backend) Format(system string, msgs []backend.Message) (string, bool, error) {
	text, err := b.format.Prompt(messages(system, msgs))
	return text, b.format.Templated(), err
}

func messages(system string, msgs []backend.Message) []prompt.Message {
	var pm []prompt.Message
	if system != "" {
		pm = append(pm, prompt.Message{Role: "system", Content: system})
	}
	return append(pm, msgs...)
}

// EncodePrompt returns the tokens a call decodes for system and msgs (op
// names the call in a warning about characters the vocabulary cannot
// spell).
func (b *Backend) EncodePrompt(op, system string, msgs []backend.Message) ([]int32, error) {
	toks, unspelled, err := b.format.EncodePrompt(messages(system, msgs))
	if err != nil {
		return nil, err
	}
	b.warn(unspelled.Warning(op + " prompt"))
	return toks, nil
}

// canSpellJSON fails when the vocabulary cannot spell the characters every
// JSON object needs (a small story model without byte fallback has no "{"),
// so structured calls say why instead of failing inside the grammar.
func (b *Backend) canSpellJSON() error {
	b.jsonOnce.Do(func() {
		_, u, err := b.model.TokenizeReport(`{"a":["b",1]}`, false, false)
		switch {
		case err != nil:
			b.jsonErr = err
		case u.Count > 0:
			b.jsonErr = fmt.Errorf("the model's vocabulary cannot spell %q, which JSON output needs: use another model for judge and screen calls", u.First)
		}
	})
	return b.jsonErr
}

// warn passes the first warning of this backend to Options.Warn.
func (b *Backend) warn(msg string) {
	if msg == "" || b.opts.Warn == nil {
		return
	}
	b.warnOnce.Do(func() { b.opts.Warn(b.name + ": " + msg) })
}

// seedOf derives a sampling seed from the prompt, so the same request gives
// the same text without an explicit seed.
func seedOf(text string, temp, topP float64) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s\x00%g\x00%g", text, temp, topP)
	return h.Sum32()
}

func (b *Backend) run(ctx context.Context, op, system string, msgs []backend.Message, temp, topP *float64, seed *int64, maxTokens int, grammar string) (string, backend.Usage, string, error) {
	if maxTokens <= 0 {
		maxTokens = b.opts.MaxTokens
	}
	wrap := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", op, b.name, ctx.Err())
		}
		return &backend.CallError{Op: op, Model: b.name, Err: err}
	}
	fail := func(err error) (string, backend.Usage, string, error) { return "", backend.Usage{}, "", wrap(err) }
	text, _, err := b.Format(system, msgs)
	if err != nil {
		return fail(err)
	}
	toks, err := b.EncodePrompt(op, system, msgs)
	if err != nil {
		return fail(err)
	}
	if len(toks) == 0 {
		return fail(errors.New("empty prompt"))
	}
	if room := b.opts.NCtx - len(toks) - 1; room < maxTokens {
		if room < 16 {
			return fail(fmt.Errorf("prompt has %d tokens; the context holds %d", len(toks), b.opts.NCtx))
		}
		maxTokens = room
	}
	t, p := 0.7, 1.0
	if temp != nil {
		t = *temp
	}
	if topP != nil {
		p = *topP
	}
	sp := bindings.SamplerParams{Temperature: float32(t), TopP: float32(p), MaxTokens: maxTokens, Grammar: grammar}
	if seed != nil {
		sp.Seed = uint32(*seed & math.MaxUint32)
	} else {
		sp.Seed = seedOf(text, t, p)
	}
	var s *bindings.Session
	select {
	case s = <-b.sessions:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	defer func() { b.sessions <- s }()
	var sb strings.Builder
	res, err := s.Generate(ctx, toks, sp, func(x string) bool { sb.WriteString(x); return true })
	u := backend.Usage{InputTokens: res.PromptTokens, OutputTokens: res.GeneratedTokens}
	if err != nil {
		return "", u, "", wrap(err)
	}
	stop := "end_turn"
	switch res.StopReason {
	case bindings.StopMaxTokens, bindings.StopContext:
		stop = "max_tokens"
	case bindings.StopString:
		stop = "stop_sequence"
	}
	return sb.String(), u, stop, nil
}

// Generate implements backend.Generator. Without a seed the seed is a hash
// of the prompt and sampling settings; without a temperature it is 0.7.
func (b *Backend) Generate(ctx context.Context, req backend.GenerateRequest) (backend.GenerateResponse, error) {
	text, u, stop, err := b.run(ctx, "generate", req.System, req.Messages, req.Temperature, req.TopP, req.Seed, req.MaxTokens, "")
	if err != nil {
		return backend.GenerateResponse{}, err
	}
	return backend.GenerateResponse{Text: strings.TrimSpace(text), StopReason: stop, Usage: u, Model: b.name}, nil
}

// StructuredCall implements backend.Structurer: generation is constrained
// by GrammarFromSchema(req.Schema), so the output is a complete JSON object
// of the schema's shape unless the token ceiling cuts it short (then an
// *backend.InvalidOutputError).
func (b *Backend) StructuredCall(ctx context.Context, req backend.StructuredRequest) (backend.StructuredResponse, error) {
	g, err := GrammarFromSchema(req.Schema.JSON, b.opts.StringLimit)
	if err != nil {
		return backend.StructuredResponse{}, fmt.Errorf("local: schema %s: %w", req.Schema.Name, err)
	}
	if err := b.canSpellJSON(); err != nil {
		return backend.StructuredResponse{}, &backend.CallError{Op: "structured", Model: b.name, Err: err}
	}
	text, u, _, err := b.run(ctx, "structured", req.System, req.Messages, req.Temperature, nil, req.Seed, req.MaxTokens, g)
	if err != nil {
		return backend.StructuredResponse{}, err
	}
	resp := backend.StructuredResponse{Raw: text, Usage: u, Model: b.name}
	obj, err := backend.ExtractJSON([]byte(text))
	if err != nil {
		return resp, &backend.InvalidOutputError{Model: b.name, Reason: "no json object", Raw: text, Usage: u, Err: err}
	}
	resp.JSON = obj
	return resp, nil
}

// Judge implements backend.Judge through StructuredCall.
func (b *Backend) Judge(ctx context.Context, req backend.JudgeRequest) (backend.JudgeResponse, error) {
	return backend.JudgeWith(ctx, b, req)
}

// Screen implements backend.Screener through StructuredCall.
func (b *Backend) Screen(ctx context.Context, req backend.ScreenRequest) (backend.ScreenResponse, error) {
	return backend.ScreenWith(ctx, b, req)
}
