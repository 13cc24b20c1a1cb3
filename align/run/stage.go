package run

import (
	"fmt"
	"math"
	"strings"

	"github.com/align-dev/align/bindings"
)

// Two stages (DESIGN.md §1: SFT, then DPO or RL against the SFT model), for
// every method:
//
// --init-adapter FILE: the policy (set 0) starts from FILE's LoRA instead of
// B = 0, with FILE's rank, alpha and targets.
//
// --ref-adapter FILE: the reference is base + FILE (frozen): FILE is loaded
// into a set of its own, "ref", whose forward is the reference instead of
// the base's. Without --init-adapter the policy starts from FILE too (the
// DPO convention π₀ = π_ref: step 0's margins, or KL, are exactly 0).
//
// Either way the policy is base + set 0, so the exported adapter.gguf is
// one llama.cpp adapter that reproduces the policy alone.

// ReadLoRAFile describes a LoRA adapter given by flag, refusing other files.
func ReadLoRAFile(flag, path string) (bindings.AdapterFile, error) {
	f, err := bindings.ReadAdapterFile(path)
	if err != nil {
		return f, flagErr(flag, path, err)
	}
	if f.Kind != "lora" {
		return f, fmt.Errorf("--%s %s: a %s file, not a LoRA adapter", flag, path, f.Kind)
	}
	if f.Rank < 1 || !(f.Alpha > 0) || f.Targets == 0 {
		return f, fmt.Errorf("--%s %s: adapter has rank %d, alpha %g, no targets: not one align can train from", flag, path, f.Rank, f.Alpha)
	}
	return f, nil
}

// ResolveStages fills the policy's rank, alpha and targets from the adapter
// it starts from: a zero Rank/Alpha or empty Targets takes the file's, a
// value that differs from the file's is a *ConfigError (the policy set must
// hold the file exactly).
func (c *Common) ResolveStages() error {
	p := c.PolicyInit()
	if p == "" {
		return nil
	}
	flag := "init-adapter"
	if c.InitAdapter == "" {
		flag = "ref-adapter"
	}
	f, err := ReadLoRAFile(flag, p)
	if err != nil {
		return err
	}
	why := fmt.Sprintf("--%s %s", flag, p)
	if c.InitAdapter == "" {
		why += " (the policy starts from the reference)"
	}
	switch {
	case c.Rank != 0 && c.Rank != f.Rank:
		return Bad("lora-rank", "is %d, but %s has rank %d: leave --lora-rank out to take the adapter's", c.Rank, why, f.Rank)
	case c.Alpha != 0 && math.Abs(c.Alpha-float64(f.Alpha)) > 1e-6*math.Abs(float64(f.Alpha)):
		return Bad("lora-alpha", "is %g, but %s has alpha %g: leave --lora-alpha out to take the adapter's", c.Alpha, why, f.Alpha)
	}
	if len(c.Targets) > 0 {
		bits, err := TargetBits(c.Targets)
		if err != nil {
			return &ConfigError{Flag: "lora-targets", Msg: err.Error()}
		}
		if bits != f.Targets {
			return Bad("lora-targets", "is %s, but %s adapts %s: leave --lora-targets out to take the adapter's",
				strings.Join(c.Targets, ","), why, strings.Join(TargetNames(f.Targets), ","))
		}
	}
	c.Rank, c.Alpha, c.Targets = f.Rank, float64(f.Alpha), TargetNames(f.Targets)
	return nil
}

// SetupStages loads the policy's starting adapter into set 0 and the
// reference adapter into a set of its own, and returns the reference: that
// set, or the base (tr.Base()) without a reference adapter.
func (c *Common) SetupStages(tr *bindings.Trainer) (bindings.Set, error) {
	p := c.PolicyInit()
	if p == "" {
		return tr.Base(), nil
	}
	if err := tr.Set(0).Load(p); err != nil {
		flag := "init-adapter"
		if c.InitAdapter == "" {
			flag = "ref-adapter"
		}
		return tr.Base(), flagErr(flag, p, err)
	}
	if c.RefAdapter == "" {
		return tr.Base(), nil
	}
	f, err := ReadLoRAFile("ref-adapter", c.RefAdapter)
	if err != nil {
		return tr.Base(), err
	}
	ref, err := tr.AddSet(bindings.SetOptions{Name: "ref", Rank: f.Rank, Alpha: f.Alpha, Targets: f.Targets, Seed: c.Seed})
	if err != nil {
		return tr.Base(), flagErr("ref-adapter", c.RefAdapter, err)
	}
	if err := ref.Load(c.RefAdapter); err != nil {
		return tr.Base(), flagErr("ref-adapter", c.RefAdapter, err)
	}
	return ref, nil
}

// flagErr is err about the file path given by flag, naming both once.
func flagErr(flag, path string, err error) error {
	return fmt.Errorf("--%s %w", flag, FileErr(path, err))
}

// FileErr is err about the file path, prefixed with path unless its
// message starts with it already (a native message does): "X: X: not a
// GGUF file" named it twice.
func FileErr(path string, err error) error {
	if strings.HasPrefix(err.Error(), path+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}
