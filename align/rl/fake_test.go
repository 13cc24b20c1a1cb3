package rl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/run/fake"
	"github.com/align-dev/align/bindings"
)

// fakeParams covers the fake vocabulary (bytes), so tokens do not share
// a parameter.
const fakeParams = 256

// fakeHost is align/run/fake as an RL run's host: the policy, the value
// set and online DPO's reference copy are closed-form sets; rollouts
// sample from the live policy with fake.Generate. The base is the policy
// at scale 0. It loads no adapters and opens no reward spec that needs
// the model (rm:, local:).
type fakeHost struct {
	policy *fake.Set
	value  *fake.Set
	copies []*fake.Set
}

var _ host = (*fakeHost)(nil)

func newFakeHost() *fakeHost { return &fakeHost{policy: fake.New(fakeParams)} }

// fakeOpen opens a fresh fake for each run (as a new process would).
func fakeOpen(Config) (host, func() error, error) {
	return newFakeHost(), func() error { return nil }, nil
}

// runFake is Run on the fake.
func runFake(ctx context.Context, cfg Config) (Result, error) { return runWith(ctx, cfg, fakeOpen) }

func (h *fakeHost) Info() bindings.TrainerInfo { return h.policy.Info() }
func (h *fakeHost) Policy() run.Trainer        { return h.policy }
func (h *fakeHost) Base() run.Trainer          { return h.policy }

func (h *fakeHost) Stages(c *run.Common) (run.Trainer, float32, error) {
	if c.PolicyInit() != "" {
		return nil, 0, errors.New("fake: no adapters to load")
	}
	return h.policy, 0, nil
}

func (h *fakeHost) AddValue(uint64) (headSet, error) {
	h.value = fake.New(fakeParams)
	if err := h.value.SetState(make([]float32, fakeParams), nil, nil, 0); err != nil {
		return nil, err
	}
	return fake.HeadSet{Set: h.value}, nil
}

func (h *fakeHost) AddCopy(string, uint64) (run.Trainer, error) {
	s := fake.New(fakeParams)
	h.copies = append(h.copies, s)
	return s, nil
}

func (h *fakeHost) PromptModel() (prompt.Model, error) { return fake.Vocab{}, nil }

// Scorer opens specs that need no model (contains:, rules:, openai:, ...).
func (h *fakeHost) Scorer(ctx context.Context, spec string, o reward.Options) (reward.Scorer, error) {
	return reward.Parse(ctx, spec, o)
}

func (h *fakeHost) Live(int) (generator, error) { return fakeGen{p: h.policy}, nil }

func (h *fakeHost) Watch(context.Context) func() { return func() {} }

// fakeGen samples from the fake policy.
type fakeGen struct {
	fake.Vocab
	p *fake.Set
}

func (g fakeGen) Generate(ctx context.Context, prompts [][]int32, sp bindings.SamplerParams) ([][]int32, error) {
	return fake.Generate(ctx, g.p, prompts, sp)
}
func (fakeGen) Close() error { return nil }

// fakeModel is a stand-in model file (the run hashes its inputs).
func fakeModel(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "fake.gguf")
	if err := os.WriteFile(p, []byte("fake model"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeConfig is smallConfig (the bookkeeping runs) on the fake.
func fakeConfig(t testing.TB, method string) Config {
	cfg := Defaults(method)
	cfg.Model = fakeModel(t)
	cfg.Prompts, cfg.EvalPrompts = toyPrompts, toyEval
	cfg.Out = filepath.Join(t.TempDir(), "run")
	cfg.Scorer = &phrase{p: "z"}
	cfg.Reward = "contains:z"
	cfg.Threads, cfg.Epochs = 2, 1
	cfg.BatchPrompts, cfg.MaxNewTokens, cfg.EvalSamples = 4, 8, 2
	if method == GRPO {
		cfg.Group = 4
		cfg.Beta = 0.1
	} else {
		cfg.Group, cfg.PPOEpochs, cfg.MiniBatches = 2, 2, 2
	}
	cfg.LR = 5e-2
	cfg.MaxSteps, cfg.EvalEvery, cfg.SaveEvery = 6, 2, 1
	return cfg
}
