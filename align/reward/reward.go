// Package reward turns a reward spec into scalar rewards for (prompt,
// response) samples: PPO and GRPO (align/rl) maximise them and `align score`
// prints them.
//
// A spec is one or more comma-separated terms, each KIND:TARGET[=WEIGHT]:
//
//	rm:DIR              a reward-model run (align train --method rm): the
//	                    head's scalar at the response's last token; unbounded,
//	                    in the Bradley–Terry units it was trained in (a
//	                    difference of 1 means the model prefers the higher
//	                    response with probability σ(1) ≈ 0.73). A bare
//	                    directory holding such a run means rm:DIR too. The
//	                    run's DIR/adapter.gguf (llama.cpp LoRA) and
//	                    DIR/head.gguf (align's heads GGUF: general.type
//	                    "align.heads", align.heads.names ["reward"],
//	                    align.heads.dims [1], align.heads.n_embd, F32 tensors
//	                    heads.weight ne [n_embd, 1] and heads.bias ne [1]:
//	                    r = heads.weight · h + heads.bias for the final
//	                    hidden state h, after the output norm) are loaded into one adapter set; the
//	                    base must be the model the run was trained on (its
//	                    SHA-256 is checked).
//	rules:CATALOG.json  the rules judge (align/backend/rules: tone lexicon,
//	                    catalog facts, escalation protocol, age rating and
//	                    confidentiality): the mean of the four criterion
//	                    scores (tone, accuracy, helpfulness, safety) it gives
//	                    the response, on the judges' 1 (worst) to 5 (best)
//	                    scale; a response no rule applies to scores 3.
//	local:FILE.gguf, openai:URL[#model], bedrock:MODEL
//	                    an LLM judge. Judges compare two responses, so the
//	                    response is shown as both A and B and its reward is
//	                    the mean of the eight criterion scores the verdict
//	                    gives (both positions, so position bias cancels):
//	                    1 to 5 as for rules:. An invalid verdict is asked
//	                    for once more with the problem stated.
//	contains:PHRASE     1 when the response contains PHRASE (case-insensitive),
//	                    else 0: a verifiable toy reward.
//
// The reward of a sample is Σ weight · term (weights default to 1; a
// WEIGHT is the number after the term's last '='). Terms are split at
// commas, so a PHRASE or a path cannot hold one. Judges see the user and
// assistant turns of the prompt (system messages are not shown to them);
// an rm: term formats the conversation as its run did (chat template or
// --raw, --max-length), whatever Options.Raw says.
//
// CONTRACT (lead, 2026-12-01): the types and signatures in this file are the
// interface align/rl and cli use; the reward-model helper owns this package
// and fills in Parse. Keep the exported names and meanings stable.
package reward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/bindings"
)

// Message is one turn of a prompt conversation (align/prompt's
// conversation type).
type Message = prompt.Message

// Sample is one completion to score.
type Sample struct {
	ID       string    // record id (for errors and `align score` output)
	Prompt   []Message // the conversation the response answers
	Response string
	// Tokens, when set, are the tokens the sample came from (a rollout's):
	// an rm: term formatting as they were made scores them instead of
	// re-tokenizing Prompt and Response. Other terms read the text.
	Tokens *Tokens
}

// Tokens are a sampled completion as the policy saw and wrote it.
type Tokens struct {
	// Format is the Key of the prompt.Formatter that made Prompt (an rm:
	// term scores the tokens only when its own formatter has this Key:
	// same model, same template, variables and end of turn).
	Format string
	Prompt []int32
	// Response is the sampled tokens without the end-of-generation token
	// sampling stopped at (the reward model ends the response as its run
	// trained: prompt.Formatter.EndResponse).
	Response []int32
}

// Scorer gives one reward per sample, in order. Not safe for concurrent use.
type Scorer interface {
	Score(ctx context.Context, samples []Sample) ([]float64, error)
	// Terms names the spec's terms with their weights, e.g. "rules:x.json=1".
	Terms() []string
	Close() error
}

// Options are what Parse may need to open a term.
type Options struct {
	// Model is the base GGUF every rm: term was trained on. When Trainer is
	// set, rm: terms become adapter sets and heads on that trainer (one
	// resident base shared with the policy: PPO's memory budget); otherwise
	// Parse opens its own trainer over Model.
	Model   *bindings.Model
	Trainer *bindings.Trainer
	// ModelPath is the base GGUF file to load for rm: terms when Model and
	// Trainer are nil (loaded once, shared by them, closed by Close); with
	// none of the three an rm: term loads the model its run was trained on.
	ModelPath string
	Threads   int
	Raw       bool // no chat template (as the policy was trained)
	// MaxLength caps prompt + response tokens for rm: scoring (0: the
	// reward model's own setting).
	MaxLength int
	// Backend configures the LLM judge terms (API key, endpoint, retries,
	// pacing, a local judge's threads); zero values take each backend's
	// defaults.
	Backend pipeline.OpenOptions
	// Spending, when set, caps and records what the paid judge terms
	// (openai:, bedrock:) spend: see Spending. It replaces Backend.Meter.
	Spending *Spending
}

// Kinds of reward terms.
const (
	KindRM       = "rm"
	KindRules    = "rules"
	KindLocal    = "local"
	KindOpenAI   = "openai"
	KindBedrock  = "bedrock"
	KindContains = "contains"
)

var kinds = []string{KindRM, KindRules, KindLocal, KindOpenAI, KindBedrock, KindContains}

// Term is one parsed term of a spec.
type Term struct {
	Kind, Target string
	Weight       float64
}

// String is the term as Terms reports it: KIND:TARGET=WEIGHT.
func (t Term) String() string {
	return t.Kind + ":" + t.Target + "=" + strconv.FormatFloat(t.Weight, 'g', -1, 64)
}

// ParseSpec splits spec into terms without opening them. Errors name the
// bad term.
func ParseSpec(spec string) ([]Term, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("empty reward spec")
	}
	var out []Term
	for i, raw := range strings.Split(spec, ",") {
		t, err := parseTerm(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("reward spec %q: term %d %q: %w", spec, i+1, raw, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func parseTerm(s string) (Term, error) {
	if s == "" {
		return Term{}, errors.New("empty term")
	}
	t := Term{Weight: 1}
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		w, err := strconv.ParseFloat(s[i+1:], 64)
		if errors.Is(err, strconv.ErrRange) {
			// a number too large (or too small) for a float: a weight, and
			// not one that can be used, rather than part of the target
			return Term{}, fmt.Errorf("weight %s: out of range, want a finite number other than 0", s[i+1:])
		}
		if err == nil {
			if math.IsNaN(w) || math.IsInf(w, 0) || w == 0 {
				return Term{}, fmt.Errorf("weight %s: want a finite number other than 0", s[i+1:])
			}
			t.Weight, s = w, s[:i]
		}
	}
	kind, target, ok := strings.Cut(s, ":")
	kind = strings.ToLower(kind)
	if !ok || !isKind(kind) {
		if isRunDir(s) {
			return Term{Kind: KindRM, Target: s, Weight: t.Weight}, nil
		}
		return Term{}, fmt.Errorf("want KIND:TARGET[=WEIGHT] with KIND one of %s (or a reward-model run directory)", strings.Join(kinds, ", "))
	}
	if target == "" {
		return Term{}, fmt.Errorf("%s: has no target", kind)
	}
	t.Kind, t.Target = kind, target
	return t, nil
}

func isKind(k string) bool {
	for _, x := range kinds {
		if k == x {
			return true
		}
	}
	return false
}

// isRunDir reports whether dir holds a training run.
func isRunDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "config.json"))
	return err == nil && st.Mode().IsRegular()
}

// Files lists the files the terms of spec read, so that a command can
// refuse an output that would replace one of them: an rm: run's
// config.json, adapter.gguf and head.gguf and the base model its config
// names, a rules: catalog and a local: model. A spec ParseSpec refuses
// gives none (Parse reports it).
func Files(spec string) []string {
	terms, err := ParseSpec(spec)
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range terms {
		switch t.Kind {
		case KindRM:
			out = append(out, filepath.Join(t.Target, "config.json"), filepath.Join(t.Target, "adapter.gguf"), filepath.Join(t.Target, "head.gguf"))
			if m := runModel(t.Target); m != "" {
				out = append(out, m)
			}
		case KindRules, KindLocal:
			out = append(out, t.Target)
		}
	}
	return out
}

// runModel is the base model a training run's config.json names ("" when
// it cannot be read).
func runModel(dir string) string {
	var c struct{ Model string }
	if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil && json.Unmarshal(b, &c) == nil {
		return c.Model
	}
	return ""
}

// scorer is one opened term.
type scorer interface {
	score(ctx context.Context, samples []Sample) ([]float64, error)
	close() error
}

// Parse opens the scorer of spec: every term is opened (a reward model
// loaded, a judge connected) before it returns. Errors name the bad term.
func Parse(ctx context.Context, spec string, o Options) (Scorer, error) {
	terms, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	s := &sum{terms: terms}
	if o.Spending != nil {
		if s.spend, err = newSpendMeter(*o.Spending); err != nil {
			return nil, err
		}
		o.Backend.Meter = s.spend
	}
	if o.Model == nil && o.Trainer == nil && o.ModelPath != "" {
		for _, t := range terms {
			if t.Kind == KindRM {
				if s.model, err = bindings.LoadModel(o.ModelPath, bindings.ModelOptions{Threads: o.Threads, Trainable: true}); err != nil {
					return nil, err
				}
				o.Model = s.model
				break
			}
		}
	}
	for _, t := range terms {
		sc, err := open(ctx, t, o)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("reward term %s: %w", t.Kind+":"+t.Target, err)
		}
		s.scorers = append(s.scorers, sc)
		if r, ok := sc.(rm); ok {
			s.rms = append(s.rms, r.m)
		}
	}
	return s, nil
}

func open(ctx context.Context, t Term, o Options) (scorer, error) {
	switch t.Kind {
	case KindContains:
		return contains{phrase: strings.ToLower(t.Target)}, nil
	case KindRM:
		if _, err := os.Stat(filepath.Join(t.Target, "config.json")); err != nil {
			// said here, before the run is read as a training run would be
			// (whose errors speak of resuming)
			return nil, fmt.Errorf("%s: not a reward-model run (no config.json: pass the directory align train --method rm wrote)", t.Target)
		}
		if o.Model == nil && o.Trainer == nil {
			// the run's own model is loaded: say what to do when it moved
			if m := runModel(t.Target); m != "" {
				if _, err := os.Stat(m); err != nil {
					return nil, fmt.Errorf("%s was trained on %s, which cannot be read (%v): pass that model's file with --model", t.Target, m, errors.Unwrap(err))
				}
			}
		}
		return openRM(t.Target, o)
	default:
		return openJudge(ctx, t.Kind+":"+t.Target, o)
	}
}

// sum is Σ weight · term.
type sum struct {
	terms   []Term
	scorers []scorer
	model   *bindings.Model // loaded from Options.ModelPath
	spend   *spendMeter     // Options.Spending's ledger and ceiling
	rms     []*RewardModel  // the rm: terms (RMInputs)
}

// RMInputs reports how many samples the spec's rm: terms have scored on the
// tokens the samples came with (Sample.Tokens) and how many on their text
// (re-encoded). It still answers after Close.
func (s *sum) RMInputs() (tokens, text int) {
	for _, m := range s.rms {
		t, x := m.Counts()
		tokens, text = tokens+t, text+x
	}
	return tokens, text
}

var _ Scorer = (*sum)(nil)

func (s *sum) Score(ctx context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	if len(samples) == 0 {
		return out, nil
	}
	for i, sc := range s.scorers {
		if sc == nil {
			return nil, errors.New("reward: scorer is closed")
		}
		v, err := sc.score(ctx, samples)
		if err != nil {
			return nil, fmt.Errorf("reward term %s: %w", s.terms[i].Kind+":"+s.terms[i].Target, err)
		}
		if len(v) != len(samples) {
			return nil, fmt.Errorf("reward term %s: %d rewards for %d samples", s.terms[i].Kind+":"+s.terms[i].Target, len(v), len(samples))
		}
		for j := range out {
			out[j] += s.terms[i].Weight * v[j]
		}
	}
	return out, nil
}

func (s *sum) Terms() []string {
	out := make([]string, len(s.terms))
	for i, t := range s.terms {
		out[i] = t.String()
	}
	return out
}

// Close closes every term (in reverse order; a reward set added to a
// shared trainer stays on it). Idempotent.
func (s *sum) Close() error {
	var errs []error
	for i := len(s.scorers) - 1; i >= 0; i-- {
		if s.scorers[i] != nil {
			errs = append(errs, s.scorers[i].close())
			s.scorers[i] = nil
		}
	}
	if s.model != nil {
		errs = append(errs, s.model.Close())
		s.model = nil
	}
	if s.spend != nil {
		errs = append(errs, s.spend.close())
		s.spend = nil
	}
	return errors.Join(errs...)
}

// contains is 1 when the response contains phrase (lower case), else 0.
type contains struct{ phrase string }

func (c contains) score(_ context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	for i, s := range samples {
		if strings.Contains(strings.ToLower(s.Response), c.phrase) {
			out[i] = 1
		}
	}
	return out, nil
}

func (contains) close() error { return nil }
