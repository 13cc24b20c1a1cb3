package rl

import (
	"context"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// host is what a PPO, GRPO or online DPO run runs on: adapter sets over
// one resident base (run.Trainer each) and sampling from the live policy.
// The native trainer is one (nativeHost); the loop tests run on
// align/run/fake's closed-form one.
type host interface {
	// Info describes the trainer (its device and context).
	Info() bindings.TrainerInfo
	// Policy is the set the run trains; Base is the frozen base, whose
	// forward is at scale 0.
	Policy() run.Trainer
	Base() run.Trainer
	// Stages loads --init-adapter (or --ref-adapter) into the policy and
	// --ref-adapter into a set of its own; it returns the reference (Base
	// without a reference adapter) and the scale of its forward.
	Stages(c *run.Common) (ref run.Trainer, scale float32, err error)
	// AddValue adds PPO's value set: one "value" head, no LoRA, all zeros.
	AddValue(seed uint64) (headSet, error)
	// AddCopy adds a set shaped as the policy (online DPO's reference).
	AddCopy(name string, seed uint64) (run.Trainer, error)
	// PromptModel is the tokenizer prompts are encoded with.
	PromptModel() (prompt.Model, error)
	// Scorer opens a --reward spec (an rm: term shares the base).
	Scorer(ctx context.Context, spec string, o reward.Options) (reward.Scorer, error)
	// Live starts sampling from the live policy (after every set is added).
	Live(threads int) (generator, error)
	// Watch cancels the trainer's work when ctx ends, until stop is called.
	Watch(ctx context.Context) (stop func())
}

// headSet is a set whose heads a run exports (PPO's value set).
type headSet interface {
	run.Trainer
	ExportHeads(path string) error
}

// generator samples from the live policy: one completion per prompt,
// sequence i with seed sp.Seed+i (bindings.GenerateBatch), each ending
// with an end-of-generation token (kept) or at sp.MaxTokens.
type generator interface {
	Generate(ctx context.Context, prompts [][]int32, sp bindings.SamplerParams) ([][]int32, error)
	IsEOG(tok int32) bool
	// Detokenize is the text of tokens, special tokens not rendered.
	Detokenize(tokens []int32) (string, error)
	// EOS is the token an empty completion stands for.
	EOS() int32
	Close() error
}

// opener opens the host of a run: the native trainer over cfg.Model, or a
// test's fake.
type opener func(cfg Config) (host, func() error, error)

// nativeHost is the native trainer as a host.
type nativeHost struct{ t *bindings.Trainer }

func openNative(cfg Config) (host, func() error, error) {
	// the trainer loads (and owns) the model: offloaded whole for a device
	// trainer, so rollouts sample there too
	t, err := run.OpenTrainer(cfg.Model, cfg.TrainerOptions())
	if err != nil {
		return nil, nil, err
	}
	return nativeHost{t}, t.Close, nil
}

func (h nativeHost) Info() bindings.TrainerInfo { return h.t.Info() }
func (h nativeHost) Policy() run.Trainer        { return h.t.Set(0) }
func (h nativeHost) Base() run.Trainer          { return h.t.Base() }

func (h nativeHost) Stages(c *run.Common) (run.Trainer, float32, error) {
	ref, err := c.SetupStages(h.t)
	if err != nil {
		return nil, 0, err
	}
	return ref, refScale(ref.ID()), nil
}

func (h nativeHost) AddValue(seed uint64) (headSet, error) {
	vs, err := h.t.AddSet(bindings.SetOptions{Name: "value", Seed: seed, Heads: []bindings.HeadSpec{{Name: "value", Dim: 1}}})
	if err != nil {
		return nil, err
	}
	// the value head starts at 0 (a random head adds noise of its own
	// size to every advantage until it has learned)
	si, err := vs.Info()
	if err != nil {
		return nil, err
	}
	if err := vs.SetState(make([]float32, si.NParams), nil, nil, 0); err != nil {
		return nil, err
	}
	return vs, nil
}

func (h nativeHost) AddCopy(name string, seed uint64) (run.Trainer, error) {
	si, err := h.t.Set(0).Info()
	if err != nil {
		return nil, err
	}
	return h.t.AddSet(bindings.SetOptions{Name: name, Rank: si.Rank, Alpha: si.Alpha, Targets: si.Targets, Seed: seed})
}

func (h nativeHost) PromptModel() (prompt.Model, error) { return engine.PromptModel(h.t.Model()) }

func (h nativeHost) Scorer(ctx context.Context, spec string, o reward.Options) (reward.Scorer, error) {
	o.Model, o.Trainer = h.t.Model(), h.t
	return reward.Parse(ctx, spec, o)
}

func (h nativeHost) Live(threads int) (generator, error) {
	info, err := h.t.Model().Info()
	if err != nil {
		return nil, err
	}
	live, err := h.t.Set(0).LiveLoRA()
	if err != nil {
		return nil, err
	}
	return nativeGen{model: h.t.Model(), live: live, threads: threads, eos: info.EOS}, nil
}

func (h nativeHost) Watch(ctx context.Context) func() { return h.t.Watch(ctx) }

// nativeGen samples with bindings.GenerateBatch from the live LoRA of
// the policy.
type nativeGen struct {
	model   *bindings.Model
	live    *bindings.LoRA
	threads int
	eos     int32
}

func (g nativeGen) Generate(ctx context.Context, prompts [][]int32, sp bindings.SamplerParams) ([][]int32, error) {
	br, err := bindings.GenerateBatch(ctx, g.model, []bindings.LoRAScale{{LoRA: g.live, Scale: 1}}, prompts, sp, g.threads)
	return br.Tokens, err
}

func (g nativeGen) IsEOG(tok int32) bool { return g.model.IsEOG(tok) }
func (g nativeGen) Detokenize(t []int32) (string, error) {
	return g.model.Detokenize(t, false)
}
func (g nativeGen) EOS() int32   { return g.eos }
func (g nativeGen) Close() error { return g.live.Close() }

// refScale is the adapter scale of the reference forward: 1 for a
// reference adapter set, 0 (none) for the base.
func refScale(set int) float32 {
	if set >= 0 {
		return 1
	}
	return 0
}
