package train

import (
	"context"
	"fmt"

	"github.com/align-dev/align/align/run"
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

// targetNames lists the ALIGN_LORA_* bits of t as --lora-targets names.
func targetNames(t uint32) []string { return run.TargetNames(t) }

// resolveStages refuses the stage flags a method cannot use and fills the
// policy's rank, alpha and targets from the adapter it starts from
// (run.Common.ResolveStages).
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
	return cfg.ResolveStages()
}

// setupStages loads the policy's starting adapter into set 0 and the
// reference adapter into a set of its own, and returns the reference
// forward: the base, or base + the reference adapter.
func setupStages(eng host, cfg Config) (func(*bindings.Batch) (Outputs, error), error) {
	tr := eng.Policy()
	base := func(b *bindings.Batch) (Outputs, error) { return tr.Forward(b, 0) }
	if cfg.PolicyInit() == "" {
		return base, nil
	}
	nt, ok := eng.(native)
	if !ok {
		return nil, fmt.Errorf("train: this trainer cannot load adapters (--init-adapter, --ref-adapter)")
	}
	ref, err := cfg.SetupStages(nt.Trainer)
	if err != nil {
		return nil, err
	}
	return func(b *bindings.Batch) (Outputs, error) { return ref.Forward(b, scaleOf(ref)) }, nil
}

// scaleOf is the adapter scale of a reference set's forward: 1 for an
// adapter set, 0 for the base.
func scaleOf(s bindings.Set) float32 {
	if s.ID() < 0 {
		return 0
	}
	return 1
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
