//go:build cgo

package eval

// This file is align/eval's only use of the native engine: generation
// through align/engine (the sampler of align sample), log-probs and logits
// through bindings sessions, pair tokenization through align/encode (as
// align train encodes pairs).

import (
	"context"
	"errors"
	"fmt"

	"github.com/align-dev/align/align/encode"
	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/pairs"
	aprompt "github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/bindings"
)

// Native generates with align/engine and scores with bindings sessions over
// one loaded base model and its adapters. Not safe for concurrent use.
type Native struct {
	modelPath string
	adapters  []Adapter
	raw       bool
	tmpl      aprompt.Options // --chat-template, --chat-template-kwargs (Raw: raw)
	threads   int
	maxLength int

	model    *bindings.Model
	info     bindings.ModelInfo
	loras    []*bindings.LoRA
	sessions map[int]*bindings.Session // adapter index (-1: base) → session
	nctx     map[int]int
	ref      map[string][2]float64 // pair id → base log-prob sums (chosen, rejected)
}

var (
	_ Generator = (*Native)(nil)
	_ Scorer    = (*Native)(nil)
)

// NativeOptions configure OpenNative.
type NativeOptions struct {
	Raw bool // no chat template (as align sample --raw)
	// Template and Kwargs: --chat-template's text (replaces the model's)
	// and --chat-template-kwargs, as align sample and align train take them
	Template  string
	Kwargs    map[string]any
	Threads   int
	MaxLength int // pair tokens per sequence for PairScores (0: 512)
}

// OpenNative loads the base model and the adapters. Close frees them.
func OpenNative(model string, adapters []Adapter, o NativeOptions) (*Native, error) {
	m, err := bindings.LoadModel(model, bindings.ModelOptions{Threads: o.Threads})
	if err != nil {
		return nil, err
	}
	n := &Native{modelPath: model, adapters: adapters, raw: o.Raw, threads: o.Threads, maxLength: o.MaxLength,
		tmpl:  aprompt.Options{Raw: o.Raw, Template: o.Template, Kwargs: o.Kwargs},
		model: m, sessions: map[int]*bindings.Session{}, nctx: map[int]int{}, ref: map[string][2]float64{}}
	if n.maxLength <= 0 {
		n.maxLength = 512
	}
	if n.info, err = m.Info(); err != nil {
		n.Close()
		return nil, err
	}
	for _, a := range adapters {
		l, err := bindings.LoadLoRA(m, a.Path)
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("--lora %s: %w", a.Path, err)
		}
		n.loras = append(n.loras, l)
	}
	return n, nil
}

// Close frees sessions, adapters and the model. Idempotent.
func (n *Native) Close() error {
	if n == nil {
		return nil
	}
	for k, s := range n.sessions {
		s.Close()
		delete(n.sessions, k)
	}
	for _, l := range n.loras {
		l.Close()
	}
	n.loras = nil
	if n.model != nil {
		n.model.Close()
		n.model = nil
	}
	return nil
}

// Generate implements Generator with engine.Sample, so a response can be
// reproduced with align sample and the same seed and settings.
func (n *Native) Generate(ctx context.Context, req GenRequest) (GenResult, error) {
	var as []engine.Adapter
	if req.Adapter >= 0 {
		a := n.adapters[req.Adapter]
		as = []engine.Adapter{{Path: a.Path, Scale: float32(a.Scale)}}
	}
	res, err := engine.Sample(ctx, engine.SampleRequest{
		Model: n.modelPath, Adapters: as, Prompt: req.Prompt, System: req.System, Raw: n.raw, Threads: n.threads,
		ChatTemplate: n.tmpl.Template, TemplateKwargs: n.tmpl.Kwargs,
		Sampler: engine.Sampler{
			Temperature: float32(req.Sampler.Temperature), TopP: float32(req.Sampler.TopP), TopK: req.Sampler.TopK,
			MinP: float32(req.Sampler.MinP), Seed: req.Seed, MaxTokens: req.Sampler.MaxTokens,
		},
	})
	if err != nil {
		return GenResult{}, err
	}
	return GenResult{Text: res.Text, Generated: res.GeneratedTokens, StopReason: res.StopReason}, nil
}

// session returns a session for adapter (-1: base) holding at least need
// tokens.
func (n *Native) session(adapter, need int) (*bindings.Session, error) {
	if s, ok := n.sessions[adapter]; ok && n.nctx[adapter] >= need {
		return s, nil
	}
	if s, ok := n.sessions[adapter]; ok {
		s.Close()
		delete(n.sessions, adapter)
	}
	nctx := max(need, 256)
	if n.info.NCtxTrain > 0 && nctx > n.info.NCtxTrain {
		if need > n.info.NCtxTrain {
			return nil, fmt.Errorf("%d tokens do not fit the model's context of %d", need, n.info.NCtxTrain)
		}
		nctx = n.info.NCtxTrain
	}
	var ls []bindings.LoRAScale
	if adapter >= 0 {
		ls = []bindings.LoRAScale{{LoRA: n.loras[adapter], Scale: float32(n.adapters[adapter].Scale)}}
	}
	s, err := bindings.NewSession(n.model, bindings.SessionOptions{NCtx: nctx, Threads: n.threads, Adapters: ls})
	if err != nil {
		return nil, err
	}
	n.sessions[adapter], n.nctx[adapter] = s, nctx
	return s, nil
}

// Score implements Scorer.
func (n *Native) Score(ctx context.Context, adapter int, system, prompt, response string) (Fluency, error) {
	// the prompt exactly as engine.Sample decodes it (align/prompt)
	pt, _, _, err := engine.SamplePromptWith(n.model, system, prompt, n.tmpl)
	if err != nil {
		return Fluency{}, err
	}
	rt, err := n.model.Tokenize(response, false, false)
	if err != nil {
		return Fluency{}, err
	}
	if len(pt) == 0 || len(rt) == 0 {
		return Fluency{}, nil
	}
	seq := append(append([]int32(nil), pt...), rt...)
	nv := n.info.NVocab
	bs, err := n.session(-1, len(seq))
	if err != nil {
		return Fluency{}, err
	}
	var f Fluency
	f.Tokens = len(rt)
	if adapter < 0 {
		lp, err := bs.LogProbs(ctx, seq)
		if err != nil {
			return Fluency{}, err
		}
		for i := len(pt) - 1; i < len(seq)-1; i++ {
			f.Logp += float64(lp[i])
		}
		return f, nil
	}
	lp, bl, err := bs.LogProbsAndLogits(ctx, seq)
	if err != nil {
		return Fluency{}, err
	}
	as, err := n.session(adapter, len(seq))
	if err != nil {
		return Fluency{}, err
	}
	_, al, err := as.LogProbsAndLogits(ctx, seq)
	if err != nil {
		return Fluency{}, err
	}
	for i := len(pt) - 1; i < len(seq)-1; i++ {
		f.Logp += float64(lp[i])
		f.KL += KL(al[i*nv:(i+1)*nv], bl[i*nv:(i+1)*nv])
	}
	return f, nil
}

// PairScores implements Scorer: pairs are tokenized as align train does
// (chat template unless raw, --max-length truncation) and each response's
// log-prob sum is taken under the adapter and the base.
func (n *Native) PairScores(ctx context.Context, adapter int, ps []pairs.Pair, betas func(string) float64) ([]PairScore, error) {
	f, err := engine.NewFormatter(n.model, n.tmpl)
	if err != nil {
		return nil, fmt.Errorf("--chat-template: %w", err)
	}
	enc, err := encode.New(f, n.maxLength)
	if err != nil {
		return nil, err
	}
	exs, _, _, err := enc.Pairs(ps, false)
	if err != nil {
		return nil, err
	}
	sum := func(sess int, prompt, resp []int32) (float64, error) {
		seq := append(append([]int32(nil), prompt...), resp...)
		s, err := n.session(sess, len(seq))
		if err != nil {
			return 0, err
		}
		lp, err := s.LogProbs(ctx, seq)
		if err != nil {
			return 0, err
		}
		t := 0.0
		for i := len(prompt) - 1; i < len(seq)-1; i++ {
			t += float64(lp[i])
		}
		return t, nil
	}
	out := make([]PairScore, 0, len(exs))
	for _, ex := range exs {
		if len(ex.Prompt) == 0 {
			return nil, errors.New("pair " + ex.ID + ": empty prompt after tokenization")
		}
		p := PairScore{Objective: ex.Objective, Beta: betas(ex.Objective)}
		var err error
		if r, ok := n.ref[ex.ID]; ok {
			p.RefW, p.RefL = r[0], r[1]
		} else {
			if p.RefW, err = sum(-1, ex.Prompt, ex.Chosen); err != nil {
				return nil, err
			}
			if p.RefL, err = sum(-1, ex.Prompt, ex.Rejected); err != nil {
				return nil, err
			}
			n.ref[ex.ID] = [2]float64{p.RefW, p.RefL}
		}
		if adapter < 0 {
			p.PiW, p.PiL = p.RefW, p.RefL
		} else {
			if p.PiW, err = sum(adapter, ex.Prompt, ex.Chosen); err != nil {
				return nil, err
			}
			if p.PiL, err = sum(adapter, ex.Prompt, ex.Rejected); err != nil {
				return nil, err
			}
		}
		out = append(out, p)
	}
	return out, nil
}
