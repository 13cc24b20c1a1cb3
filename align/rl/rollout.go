package rl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// Seq is one sampled completion of a rollout and what the update needs of
// it, per response token t: the log-probs of the policy that sampled it
// (Old), of the reference (Ref, empty without a reference pass) and the
// value of the state before t (Val, PPO).
type Seq struct {
	Prompt   int     // index into the run's prompts
	Tokens   []int32 // prompt tokens
	Resp     []int32 // sampled tokens (an end-of-generation token included when sampled)
	Text     string  // the response text the reward saw
	Score    float64 // the reward
	Old, Ref []float64
	Val      []float64
	Adv, Ret []float64 // advantages and returns (PPO: per token; GRPO: Adv only, one value)
	body     int       // len(Resp) without the end-of-generation token
}

// sample is s as a reward sees it: the text, and the tokens the policy
// read and wrote (an rm: term formatting as the policy did scores those).
func (s *Seq) sample(id string, p *Prompt) reward.Sample {
	return reward.Sample{ID: id, Prompt: p.Messages, Response: s.Text,
		Tokens: &reward.Tokens{Format: p.Format, Prompt: p.Tokens, Response: s.Resp[:s.body]}}
}

// worker is what rollouts and updates run on: the policy, its reference
// and PPO's value set over one resident base, and sampling from the live
// policy.
type worker struct {
	policy   run.Trainer
	ref      run.Trainer // the reference (--ref-adapter's set, or the base)
	refScale float32     // its forward's adapter scale (0: the base)
	base     run.Trainer // the frozen base (forward at scale 0)
	value    headSet     // nil: none (GRPO)
	gen      generator
	chunk    int // sequences per forward pass
}

// sampler is the rollout sampler of cfg with seed.
func sampler(cfg *Config, seed uint32) bindings.SamplerParams {
	return bindings.SamplerParams{Temperature: float32(cfg.Temperature), TopP: float32(cfg.TopP), TopK: cfg.TopK,
		MinP: float32(cfg.MinP), Seed: seed, MaxTokens: cfg.MaxNewTokens}
}

// generate samples one completion per entry of idx (prompt indices) from
// the live policy; sequence i samples with seed+i (bindings.GenerateBatch),
// equal prompts are decoded once.
func (e *worker) generate(ctx context.Context, ps []Prompt, idx []int, sp bindings.SamplerParams) ([]*Seq, error) {
	toks := make([][]int32, len(idx))
	for i, k := range idx {
		toks[i] = ps[k].Tokens
	}
	gen, err := e.gen.Generate(ctx, toks, sp)
	if err != nil {
		return nil, err
	}
	if len(gen) != len(idx) {
		return nil, fmt.Errorf("rl: %d completions for %d prompts", len(gen), len(idx))
	}
	out := make([]*Seq, len(idx))
	for i, k := range idx {
		resp := gen[i]
		if len(resp) == 0 {
			resp = []int32{e.gen.EOS()}
		}
		s := e.seq(ps, k, resp, "")
		if s.body > 0 {
			if s.Text, err = e.gen.Detokenize(resp[:s.body]); err != nil {
				return nil, err
			}
			s.Text = engine.WholeCharacters(s.Text) // cut at max_tokens inside a character
		}
		out[i] = s
	}
	return out, nil
}

// seq is the completion resp of prompt k of ps, whose text is text.
func (e *worker) seq(ps []Prompt, k int, resp []int32, text string) *Seq {
	body := len(resp)
	if body > 0 && e.gen.IsEOG(resp[body-1]) {
		body--
	}
	return &Seq{Prompt: k, Tokens: ps[k].Tokens, Resp: resp, Text: text, body: body}
}

// score sets each sequence's reward.
func score(ctx context.Context, sc reward.Scorer, ps []Prompt, seqs []*Seq) error {
	samples := make([]reward.Sample, len(seqs))
	for i, s := range seqs {
		samples[i] = s.sample(ps[s.Prompt].ID, &ps[s.Prompt])
	}
	rs, err := sc.Score(ctx, samples)
	if err != nil {
		return fmt.Errorf("reward: %w", err)
	}
	if len(rs) != len(seqs) {
		return fmt.Errorf("reward: %d scores for %d samples", len(rs), len(seqs))
	}
	for i, r := range rs {
		if !finite(r) {
			return fmt.Errorf("reward: sample %d of prompt %q scored %g", i, samples[i].ID, r)
		}
		seqs[i].Score = r
	}
	return nil
}

// batch lays out seqs for the trainer: prompt + response, response tokens
// scored; with heads, the value head reads the hidden state before each
// response token (positions len(prompt)−1 … len(prompt)+len(resp)−2), so
// head value t is V(state before token t) in token order.
func batch(seqs []*Seq, heads bool) *bindings.Batch {
	ls := make([]run.Seq, len(seqs))
	for k, s := range seqs {
		ls[k] = run.Seq{Prompt: s.Tokens, Response: s.Resp}
	}
	return run.Layout(ls, heads)
}

// split cuts a flat per-token array in Outputs order back into sequences.
func split(flat []float32, seqs []*Seq, dst func(s *Seq) *[]float64) error {
	off := 0
	for _, s := range seqs {
		n := len(s.Resp)
		if off+n > len(flat) {
			return errors.New("rl: forward returned fewer values than response tokens")
		}
		v := make([]float64, n)
		for t := range v {
			v[t] = float64(flat[off+t])
		}
		*dst(s) = v
		off += n
	}
	if off != len(flat) {
		return errors.New("rl: forward returned more values than response tokens")
	}
	return nil
}

// passes is what a rollout's forward passes cost.
type passes struct{ old, ref, value time.Duration }

// logprobs fills Old (policy), Ref (reference, when ref) and Val (value
// head, when the engine has one) in chunks of e.chunk sequences.
func (e *worker) logprobs(seqs []*Seq, old, ref bool) (passes, error) {
	var p passes
	for i := 0; i < len(seqs); i += e.chunk {
		part := seqs[i:min(len(seqs), i+e.chunk)]
		b := batch(part, false)
		if old {
			t0 := time.Now()
			out, err := e.policy.Forward(b, 1)
			if err != nil {
				return p, err
			}
			if err := split(out.Logps, part, func(s *Seq) *[]float64 { return &s.Old }); err != nil {
				return p, err
			}
			p.old += time.Since(t0)
		}
		if ref {
			t0 := time.Now()
			out, err := e.ref.Forward(b, e.refScale)
			if err != nil {
				return p, err
			}
			if err := split(out.Logps, part, func(s *Seq) *[]float64 { return &s.Ref }); err != nil {
				return p, err
			}
			p.ref += time.Since(t0)
		}
		if e.value != nil {
			t0 := time.Now()
			bv := batch(part, true)
			out, err := e.value.Forward(bv, 1)
			if err != nil {
				return p, err
			}
			if err := split(out.Heads, part, func(s *Seq) *[]float64 { return &s.Val }); err != nil {
				return p, err
			}
			p.value += time.Since(t0)
		}
	}
	return p, nil
}
