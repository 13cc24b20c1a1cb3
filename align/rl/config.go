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
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"

	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/train"
)

// Methods.
const (
	PPO  = "ppo"
	GRPO = "grpo"
)

// Config is one PPO or GRPO run.
type Config struct {
	Method      string
	Model       string
	Prompts     string
	EvalPrompts string
	EvalSplit   float64 // fraction of Prompts held out when EvalPrompts is empty
	Out         string
	Resume      bool
	Force       bool `json:"-"`
	Reward      string

	Epochs       int // passes over the training prompts
	BatchPrompts int // prompts per rollout step
	Group        int // completions per prompt (GRPO's G; PPO default 1)
	MaxNewTokens int
	MaxLength    int // prompt + completion tokens (prompts cut from the left)
	Temperature  float64
	TopP         float64
	TopK         int
	MinP         float64

	LR          float64
	ValueLR     float64
	Schedule    string
	WarmupSteps int
	MaxGradNorm float64
	Rank        int
	Alpha       float64
	Targets     []string
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

	EvalEvery   int // rollout steps between held-out evaluations (0: each epoch)
	SaveEvery   int // rollout steps between checkpoints (0: each epoch)
	EvalSamples int // completions per held-out prompt
	MaxSteps    int
	Seed        uint64
	Threads     int
	Device      string `json:",omitempty"` // train.ResolveDevice; "" is auto
	// BackwardWeights: the CPU trainer's weight copies for the input gradient
	BackwardWeights string `json:",omitempty"`
	Recompute       string `json:",omitempty"` // train.ResolveRecompute
	Raw             bool

	Hashes map[string]string `json:",omitempty"`

	// Continue holds what a resumed run may change.
	Continue train.ResumeOptions `json:"-"`
	// Scorer, when set, is used instead of parsing Reward (tests).
	Scorer reward.Scorer `json:"-"`
	// OnStep is called after each rollout step (tests interrupt there).
	OnStep func(step int) `json:"-"`
	// Log receives notes for a human (nil: silent).
	Log io.Writer `json:"-"`
	// Progress receives one line per step (nil: none).
	Progress func(Event) `json:"-"`
}

// Event is one progress update of a run.
type Event struct {
	Phase       string // "rollout", "train", "eval"; "" for a note
	Done, Total int
	Stats       string
	Note        string
}

// Defaults returns the settings the CLI shows for method.
func Defaults(method string) Config {
	c := Config{
		Method: method, EvalSplit: 0.1, Epochs: 3, BatchPrompts: 8, Group: 1, MaxNewTokens: 32, MaxLength: 512,
		Temperature: 1, TopP: 1, TopK: 0, MinP: 0,
		LR: 5e-4, ValueLR: 0, Schedule: "constant", WarmupSteps: 0, MaxGradNorm: 1, Rank: 8, Alpha: 16,
		Targets: []string{"q", "k", "v", "o"}, PPOEpochs: 4, MiniBatches: 1,
		ClipEps: 0.2, ClipValue: 0.2, Gamma: 1, Lambda: 0.95, KLCoef: 0.05, KLHorizon: 10000,
		EvalSamples: 2, Seed: 1,
	}
	if method == GRPO {
		c.Group, c.PPOEpochs, c.BatchPrompts = 8, 1, 4
	}
	return c
}

type configError = train.ConfigError

func bad(flag, format string, a ...any) error {
	return &configError{Flag: flag, Msg: fmt.Sprintf(format, a...)}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Validate checks every setting without touching a file; the first bad one
// is a *train.ConfigError naming its flag.
func (c *Config) Validate() error {
	nonneg := func(flag string, v float64) error {
		if !(v >= 0) || !finite(v) {
			return bad(flag, "must be a number >= 0 (got %g)", v)
		}
		return nil
	}
	switch {
	case c.Method != PPO && c.Method != GRPO:
		return bad("method", "must be ppo or grpo here (got %q)", c.Method)
	case c.Model == "":
		return bad("model", "is required")
	case c.Prompts == "" && !c.Resume:
		return bad("prompts", "is required (a JSON Lines file of {\"prompt\": ...})")
	case c.Reward == "" && c.Scorer == nil:
		return bad("reward", "is required (e.g. rules:catalog.json, rm:DIR, contains:PHRASE)")
	case c.Out == "":
		return bad("out", "is required")
	case c.Prompts == "-" || c.EvalPrompts == "-":
		return bad("prompts", "cannot be standard input (a resumed run reads it again)")
	case c.Epochs < 1:
		return bad("epochs", "must be at least 1 (got %d)", c.Epochs)
	case c.BatchPrompts < 1:
		return bad("rollout-batch", "must be at least 1 (got %d)", c.BatchPrompts)
	case c.Group < 1 || (c.Method == GRPO && c.Group < 2):
		return bad("group", "must be at least %d for %s (got %d)", map[bool]int{true: 2, false: 1}[c.Method == GRPO], c.Method, c.Group)
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
	case !(c.LR > 0) || !finite(c.LR):
		return bad("lr", "must be a positive number (got %g)", c.LR)
	case nonneg("value-lr", c.ValueLR) != nil:
		return nonneg("value-lr", c.ValueLR)
	case c.WarmupSteps < 0:
		return bad("warmup-steps", "must not be negative (got %d)", c.WarmupSteps)
	case nonneg("max-grad-norm", c.MaxGradNorm) != nil:
		return nonneg("max-grad-norm", c.MaxGradNorm)
	case c.Rank < 1:
		return bad("lora-rank", "must be at least 1 (got %d)", c.Rank)
	case !(c.Alpha > 0) || !finite(c.Alpha):
		return bad("lora-alpha", "must be a positive number (got %g)", c.Alpha)
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
	case !(c.EvalSplit >= 0 && c.EvalSplit < 1):
		return bad("eval-split", "must be in [0, 1) (got %g)", c.EvalSplit)
	case c.EvalEvery < 0:
		return bad("eval-every", "must not be negative (got %d)", c.EvalEvery)
	case c.SaveEvery < 0:
		return bad("save-every", "must not be negative (got %d)", c.SaveEvery)
	case c.EvalSamples < 1:
		return bad("eval-samples", "must be at least 1 (got %d)", c.EvalSamples)
	case c.MaxSteps < 0:
		return bad("max-steps", "must not be negative (got %d)", c.MaxSteps)
	case c.Threads < 0 || c.Threads > max(8, 4*runtime.NumCPU()):
		return bad("threads", "must be in [0, %d], 0 for all cores (got %d)", max(8, 4*runtime.NumCPU()), c.Threads)
	}
	switch c.Schedule {
	case "cosine", "linear", "constant":
	default:
		return bad("schedule", "must be cosine, linear or constant (got %q)", c.Schedule)
	}
	if _, err := train.TargetBits(c.Targets); err != nil {
		return &configError{Flag: "lora-targets", Msg: err.Error()}
	}
	if err := train.CheckBackwardWeights(c.BackwardWeights); err != nil {
		return err
	}
	if err := train.CheckRecompute(c.Recompute); err != nil {
		return err
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

// needsRef reports whether a rollout needs reference log-probs.
func (c *Config) needsRef() bool {
	return c.Method == PPO || c.Beta > 0 || c.MaxKL > 0
}

func (c *Config) String() string { return strings.ToUpper(c.Method) }
