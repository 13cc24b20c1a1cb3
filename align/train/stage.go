package train

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/align-dev/align/bindings"
)

// Two-stage training (DESIGN.md §1: SFT, then DPO against the SFT model).
//
// --init-adapter FILE: the policy (set 0) starts from FILE's LoRA instead of
// B = 0, with FILE's rank, alpha and targets.
//
// --ref-adapter FILE: the reference is base + FILE (frozen): FILE is loaded
// into a second adapter set, "ref", and the reference log-probs are that
// set's forward instead of the base's (scale 0). Without --init-adapter the
// policy starts from FILE too (the DPO convention π₀ = π_ref: step 0's
// margins are exactly 0, and the policy's KL anchor is where it starts).
//
// Either way the policy is base + set 0, so the exported adapter.gguf is
// one llama.cpp adapter that reproduces the policy alone: it already holds
// the SFT stage's update (the two stages are one adapter of the SFT
// adapter's rank, not a stack of two).

// stageTrainer is what two-stage runs need of a trainer beyond Trainer:
// adapter sets loaded from files and forwards over a chosen set.
// *bindings.Trainer implements it.
type stageTrainer interface {
	AddSet(o bindings.SetOptions) (int, error)
	LoadSet(set int, path string) error
	ForwardSet(b *bindings.Batch, set int, loraScale float32) (Outputs, error)
}

var _ stageTrainer = (*bindings.Trainer)(nil)

// policyInit is the adapter the policy starts from ("" for B = 0).
func (c *Config) policyInit() string {
	if c.InitAdapter != "" {
		return c.InitAdapter
	}
	return c.RefAdapter
}

// targetNames lists the ALIGN_LORA_* bits of t as --lora-targets names.
func targetNames(t uint32) []string {
	var out []string
	for _, n := range []struct {
		name string
		bit  uint32
	}{{"q", bindings.TargetQ}, {"k", bindings.TargetK}, {"v", bindings.TargetV}, {"o", bindings.TargetO},
		{"gate", bindings.TargetGate}, {"up", bindings.TargetUp}, {"down", bindings.TargetDown}} {
		if t&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// readLoRAFile describes a LoRA adapter given by flag, refusing other files.
func readLoRAFile(flag, path string) (bindings.AdapterFile, error) {
	f, err := bindings.ReadAdapterFile(path)
	if err != nil {
		return f, fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	if f.Kind != "lora" {
		return f, fmt.Errorf("--%s %s: a %s file, not a LoRA adapter", flag, path, f.Kind)
	}
	if f.Rank < 1 || !(f.Alpha > 0) || f.Targets == 0 {
		return f, fmt.Errorf("--%s %s: adapter has rank %d, alpha %g, no targets: not one align can train from", flag, path, f.Rank, f.Alpha)
	}
	return f, nil
}

// resolveStages fills the policy's rank, alpha and targets from the adapter
// it starts from: a zero Rank/Alpha or empty Targets takes the file's, a
// value that differs from the file's is a *ConfigError (the policy set must
// hold the file exactly).
func resolveStages(cfg *Config) error {
	if (cfg.RefAdapter != "" || cfg.InitAdapter != "") && cfg.Method == RM {
		flag := "ref-adapter"
		if cfg.InitAdapter != "" {
			flag = "init-adapter"
		}
		return bad(flag, "is not supported with --method rm (the reward model trains a set of its own)")
	}
	if cfg.RefAdapter != "" && cfg.Method == SFT {
		return bad("ref-adapter", "has no use with --method sft (SFT has no reference; --init-adapter continues from an adapter)")
	}
	p := cfg.policyInit()
	if p == "" {
		return nil
	}
	flag := "init-adapter"
	if cfg.InitAdapter == "" {
		flag = "ref-adapter"
	}
	f, err := readLoRAFile(flag, p)
	if err != nil {
		return err
	}
	why := fmt.Sprintf("--%s %s", flag, p)
	if cfg.InitAdapter == "" {
		why += " (the policy starts from the reference)"
	}
	switch {
	case cfg.Rank != 0 && cfg.Rank != f.Rank:
		return bad("lora-rank", "is %d, but %s has rank %d: leave --lora-rank out to take the adapter's", cfg.Rank, why, f.Rank)
	case cfg.Alpha != 0 && math.Abs(cfg.Alpha-float64(f.Alpha)) > 1e-6*math.Abs(float64(f.Alpha)):
		return bad("lora-alpha", "is %g, but %s has alpha %g: leave --lora-alpha out to take the adapter's", cfg.Alpha, why, f.Alpha)
	}
	if len(cfg.Targets) > 0 {
		bits, err := targetBits(cfg.Targets)
		if err != nil {
			return &ConfigError{Flag: "lora-targets", Msg: err.Error()}
		}
		if bits != f.Targets {
			return bad("lora-targets", "is %s, but %s adapts %s: leave --lora-targets out to take the adapter's",
				strings.Join(cfg.Targets, ","), why, strings.Join(targetNames(f.Targets), ","))
		}
	}
	cfg.Rank, cfg.Alpha, cfg.Targets = f.Rank, float64(f.Alpha), targetNames(f.Targets)
	return nil
}

// setupStages loads the policy's starting adapter into set 0 and the
// reference adapter into a set of its own, and returns the reference
// forward: base (set 0 at scale 0) or base + the reference adapter.
func setupStages(tr Trainer, cfg Config) (func(*bindings.Batch) (Outputs, error), error) {
	base := func(b *bindings.Batch) (Outputs, error) { return tr.Forward(b, 0) }
	p := cfg.policyInit()
	if p == "" {
		return base, nil
	}
	st, ok := tr.(stageTrainer)
	if !ok {
		return nil, fmt.Errorf("train: this trainer cannot load adapters (--init-adapter, --ref-adapter)")
	}
	if err := st.LoadSet(0, p); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if cfg.RefAdapter == "" {
		return base, nil
	}
	f, err := readLoRAFile("ref-adapter", cfg.RefAdapter)
	if err != nil {
		return nil, err
	}
	id, err := st.AddSet(bindings.SetOptions{Name: "ref", Rank: f.Rank, Alpha: f.Alpha, Targets: f.Targets, Seed: cfg.Seed})
	if err != nil {
		return nil, fmt.Errorf("--ref-adapter %s: %w", cfg.RefAdapter, err)
	}
	if err := st.LoadSet(id, cfg.RefAdapter); err != nil {
		return nil, fmt.Errorf("--ref-adapter %s: %w", cfg.RefAdapter, err)
	}
	return func(b *bindings.Batch) (Outputs, error) { return st.ForwardSet(b, id, 1) }, nil
}

// MergeAdapter is one adapter for Merge with llama.cpp's user scale.
type MergeAdapter = bindings.MergeLoRA

// MergeOptions and MergeResult are align_merge's (see bindings.Merge).
type (
	MergeOptions = bindings.MergeOptions
	MergeResult  = bindings.MergeResult
)

// Merge folds adapters into the base model and writes out (`align merge`):
// W + Σ scale·alpha/r·B·A per adapted weight, re-quantised to the base's
// type or opt.Type, atomically.
func Merge(ctx context.Context, base string, adapters []MergeAdapter, out string, opt MergeOptions) (MergeResult, error) {
	return bindings.Merge(ctx, base, adapters, out, opt)
}
