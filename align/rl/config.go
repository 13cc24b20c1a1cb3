// Package rl trains a LoRA policy by reinforcement learning on one frozen
// base: PPO (a value head, GAE, a per-token KL penalty to the reference)
// and GRPO (group-relative advantages, optional k3 KL to the reference).
// Policy, value and any reward model are adapter sets and heads on the same
// trainer; the reference is the base with adapters off; rollouts are
// sampled from the live policy adapter (no copy of the base, no file).
//
// A run directory holds config.json, metrics.jsonl (one "train" row per
// rollout step, "eval" rows on held-out prompts), checkpoints/step-N
// (policy and value state, Adam moments, cursor, KL coefficient; the
// rollout RNG is a pure function of the seed and the step),
// adapter.gguf (llama.cpp LoRA), PPO's value head as value.gguf (align's
// heads GGUF) and summary.json.
package rl

import (
	"strings"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/run"
)

// Methods (align/objective's registry describes them).
const (
	PPO  = objective.PPO
	GRPO = objective.GRPO
	// OnlineDPO samples pairs from the live policy, judges them and takes
	// a DPO step on them (online.go); with Rounds > 1, iterative DPO.
	OnlineDPO = objective.OnlineDPO
)

// Config is one PPO or GRPO run: the harness's shared settings (run.Common:
// base, policy adapter, schedule, cadence) and the RL ones.
type Config struct {
	run.Common
	Prompts     string
	EvalPrompts string
	// Reward is the reward spec (align/reward), stored with absolute paths.
	Reward string

	BatchPrompts int // prompts per rollout step
	Group        int // completions per prompt (GRPO's G; PPO default 1)
	MaxNewTokens int
	Temperature  float64
	TopP         float64
	TopK         int
	MinP         float64

	ValueLR     float64
	PPOEpochs   int // optimisation passes over each rollout batch
	MiniBatches int // optimiser steps per pass

	ClipEps   float64 // ε of the surrogate
	ClipValue float64 // ε of the value loss (PPO)
	Gamma     float64
	Lambda    float64
	KLCoef    float64 // PPO: per-token KL penalty in the reward
	KLTarget  float64 // PPO: adaptive coefficient target (0: fixed)
	KLHorizon float64
	Beta      float64 // GRPO: weight of the k3 KL term (0: no reference pass)
	NoStd     bool    // GRPO: no std division (Dr. GRPO)
	MaxKL     float64 // stop when a step's KL exceeds it (0: off)

	EvalSamples int // completions per held-out prompt

	// Online DPO (online.go). Judge is a pairwise judge spec (rules:,
	// local:, openai:, bedrock:; stored with absolute paths); without it
	// the pairs are ranked by Reward. Samples is K, the completions per
	// prompt (best vs worst); Rounds the reference refreshes; RoundSteps
	// the steps of a round, fixed when the run starts. Beta is DPO's β.
	Judge      string `json:",omitempty"`
	Samples    int    `json:",omitempty"`
	Rounds     int    `json:",omitempty"`
	RoundSteps int    `json:",omitempty"`

	// MaxUSD caps what paid judges (openai:, bedrock:) spend over the
	// run, the run directory's ledger.jsonl included (nil: no cap; a
	// resume may change it). Prices is a price table file ("": built in).
	MaxUSD *float64 `json:",omitempty"`
	Prices string   `json:",omitempty"`

	// Scorer, when set, is used instead of parsing Reward (tests).
	Scorer reward.Scorer `json:"-"`
	// Progress receives one line per step and notes (nil: none).
	Progress run.Progress `json:"-"`
	// OnJudged, if set, is called after each judgment online DPO records
	// (tests interrupt a run mid-step with it).
	OnJudged func(n int) `json:"-"`
}

// Event is one progress update of a run (the harness's).
type Event = run.Event

// MaxGroup is the most completions per rollout step (so per prompt): the
// batched generator decodes at most 256 sequences at once.
const MaxGroup = 256

// Defaults returns the settings the CLI shows for method: the harness's
// shared defaults (as every method's), a constant schedule without warm-up,
// and the RL ones.
func Defaults(method string) Config {
	c := Config{
		Common: run.Defaults(method), BatchPrompts: 8, Group: 1, MaxNewTokens: 32,
		Temperature: 1, TopP: 1, TopK: 0, MinP: 0, ValueLR: 0, PPOEpochs: 4, MiniBatches: 1,
		ClipEps: 0.2, ClipValue: 0.2, Gamma: 1, Lambda: 0.95, KLCoef: 0.05, KLHorizon: 10000, EvalSamples: 2,
	}
	c.Schedule, c.WarmupSteps = "constant", 0
	if method == GRPO {
		c.Group, c.PPOEpochs, c.BatchPrompts = 8, 1, 4
	}
	if method == OnlineDPO {
		c.Samples, c.Rounds, c.Beta, c.PPOEpochs = 2, 1, 0.1, 1
	}
	return c
}

func bad(flag, format string, a ...any) error { return run.Bad(flag, format, a...) }

func finite(x float64) bool { return run.Finite(x) }

// Validate checks every setting without touching a file; the first bad one
// is a *run.ConfigError naming its flag.
func (c *Config) Validate() error {
	nonneg := func(flag string, v float64) error {
		if !(v >= 0) || !finite(v) {
			return bad(flag, "must be a number >= 0 (got %g)", v)
		}
		return nil
	}
	if c.Method == OnlineDPO {
		return c.validateOnline()
	}
	switch {
	case objective.KindOf(c.Method) != objective.Rollout:
		return bad("method", "must be %s here (got %q)", orList(objective.Names(objective.Rollout, objective.Online)), c.Method)
	case c.Prompts == "" && !c.Resume:
		return bad("prompts", "is required (a JSON Lines file of {\"prompt\": ...})")
	case c.Judge != "":
		return bad("judge", "is an online-dpo setting (PPO and GRPO take a scalar --reward)")
	case c.MaxUSD != nil && !(*c.MaxUSD >= 0 && finite(*c.MaxUSD)):
		return bad("max-usd", "must be a finite amount, 0 or more (got %g)", *c.MaxUSD)
	case c.Reward == "" && c.Scorer == nil:
		return bad("reward", "is required (e.g. rules:catalog.json, rm:DIR, contains:PHRASE)")
	case c.Prompts == "-" || c.EvalPrompts == "-":
		return bad("prompts", "cannot be standard input (a resumed run reads it again)")
	}
	if err := c.Common.Validate(); err != nil {
		return err
	}
	minGroup := 1
	if c.Method == GRPO {
		minGroup = 2
	}
	switch {
	case c.BatchPrompts < 1:
		return bad("rollout-batch", "must be at least 1 (got %d)", c.BatchPrompts)
	case c.Group < minGroup || c.Group > MaxGroup:
		return bad("group", "must be in [%d, %d] for %s (got %d)", minGroup, MaxGroup, c.Method, c.Group)
	case c.BatchPrompts*c.Group > MaxGroup:
		return bad("rollout-batch", "times --group is at most %d completions per step, what one batched generation decodes (got %d × %d)", MaxGroup, c.BatchPrompts, c.Group)
	case c.MaxNewTokens < 1:
		return bad("max-new-tokens", "must be at least 1 (got %d)", c.MaxNewTokens)
	case c.MaxLength < c.MaxNewTokens+2:
		return bad("max-length", "must exceed --max-new-tokens by at least 2 (got %d with %d)", c.MaxLength, c.MaxNewTokens)
	case !(c.Temperature > 0) || !finite(c.Temperature):
		return bad("temperature", "must be positive for rollouts (got %g)", c.Temperature)
	case !(c.TopP > 0 && c.TopP <= 1):
		return bad("top-p", "must be in (0, 1] (got %g)", c.TopP)
	case c.TopK < 0:
		return bad("top-k", "must not be negative (got %d)", c.TopK)
	case !(c.MinP >= 0 && c.MinP < 1):
		return bad("min-p", "must be in [0, 1) (got %g)", c.MinP)
	case nonneg("value-lr", c.ValueLR) != nil:
		return nonneg("value-lr", c.ValueLR)
	case c.PPOEpochs < 1:
		return bad("ppo-epochs", "must be at least 1 (got %d)", c.PPOEpochs)
	case c.MiniBatches < 1:
		return bad("mini-batches", "must be at least 1 (got %d)", c.MiniBatches)
	case c.MiniBatches > c.BatchPrompts*c.Group:
		return bad("mini-batches", "must be at most the completions per step, %d (got %d)", c.BatchPrompts*c.Group, c.MiniBatches)
	case !(c.ClipEps > 0 && c.ClipEps < 1):
		return bad("clip-eps", "must be in (0, 1) (got %g)", c.ClipEps)
	case !(c.ClipValue > 0) || !finite(c.ClipValue):
		return bad("value-clip", "must be a positive number (got %g)", c.ClipValue)
	case !(c.Gamma >= 0 && c.Gamma <= 1):
		return bad("gamma", "must be in [0, 1] (got %g)", c.Gamma)
	case !(c.Lambda >= 0 && c.Lambda <= 1):
		return bad("lambda", "must be in [0, 1] (got %g)", c.Lambda)
	case nonneg("kl-coef", c.KLCoef) != nil:
		return nonneg("kl-coef", c.KLCoef)
	case nonneg("kl-target", c.KLTarget) != nil:
		return nonneg("kl-target", c.KLTarget)
	case !(c.KLHorizon > 0) || !finite(c.KLHorizon):
		return bad("kl-horizon", "must be a positive number (got %g)", c.KLHorizon)
	case nonneg("beta", c.Beta) != nil:
		return nonneg("beta", c.Beta)
	case nonneg("max-kl", c.MaxKL) != nil:
		return nonneg("max-kl", c.MaxKL)
	case c.EvalSamples < 1:
		return bad("eval-samples", "must be at least 1 (got %d)", c.EvalSamples)
	case c.Patience > 0 && c.EvalPrompts == "" && c.EvalSplit == 0:
		return bad("patience", "needs held-out prompts (--eval-prompts or --eval-split; got %d with neither)", c.Patience)
	}
	if c.Method == PPO && c.NoStd {
		return bad("no-std", "is a GRPO setting (PPO whitens its advantages)")
	}
	return nil
}

// valueLR is the value head's learning rate (default: 10 × the policy's:
// a head on frozen features learns slowly at a LoRA rate).
func (c *Config) valueLR() float64 {
	if c.ValueLR > 0 {
		return c.ValueLR
	}
	return 10 * c.LR
}

// needsRef reports whether a rollout needs reference log-probs: always
// for a method whose registry row says so (PPO), and for an optional one
// (GRPO) with a KL term or a KL stop.
func (c *Config) needsRef() bool {
	m, _ := objective.Lookup(c.Method)
	return m.NeedsReference(c.Beta > 0 || c.MaxKL > 0)
}

// orList is "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func (c *Config) String() string { return strings.ToUpper(c.Method) }
