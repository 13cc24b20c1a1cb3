package rl

// The RL loop on align/run/fake: rollouts, updates, checkpoints and resume
// without a model, in milliseconds. The tests on the tiny native fixture
// (rl_test.go, online_test.go) prove the real path; these pin down the
// loop's bookkeeping for every method.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/cost"
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

// fakeConfig is smallConfig (the bookkeeping runs) on the fake, with a
// learning rate the closed-form policy moves at and six steps.
func fakeConfig(t testing.TB, method string) Config {
	cfg := small(toyOn(t, method, fakeModel(t)))
	cfg.LR, cfg.MaxSteps, cfg.EvalSamples = 5e-2, 6, 2
	return cfg
}

// stripTimes is the metrics log without its wall-clock fields, one JSON
// row per line.
func stripTimes(rows []map[string]any) string {
	var sb strings.Builder
	for _, row := range rows {
		for k := range row {
			if strings.HasPrefix(k, "time/") || k == "tokens_per_s" {
				delete(row, k)
			}
		}
		j, _ := json.Marshal(row)
		sb.Write(j)
		sb.WriteByte('\n')
	}
	return sb.String()
}

// newestCheckpoint is the step of the newest checkpoint in out (-1: none).
func newestCheckpoint(out string) int {
	names := run.ListCheckpoints(filepath.Join(out, "checkpoints"))
	if len(names) == 0 {
		return -1
	}
	var step int
	fmt.Sscanf(names[len(names)-1], "step-%d", &step)
	return step
}

// fakeVariants are the update paths: PPO (value set, several epochs and
// mini-batches), GRPO with its own pass for the old log-probs, and GRPO
// taking them from the update's first forward.
func fakeVariants(t *testing.T) map[string]Config {
	grpoReuse := fakeConfig(t, GRPO)
	grpoReuse.PPOEpochs, grpoReuse.MiniBatches = 1, 1
	grpoPasses := fakeConfig(t, GRPO)
	grpoPasses.PPOEpochs, grpoPasses.MiniBatches = 2, 2
	ppo := fakeConfig(t, PPO)
	ppo.KLTarget, ppo.KLHorizon = 0.5, 100 // the adaptive coefficient moves (and resumes)
	return map[string]Config{PPO: ppo, "grpo-reuse-old": grpoReuse, "grpo-passes": grpoPasses}
}

// One train row per step with the method's metrics, held-out rows at
// step 0, every --eval-every steps and the end (each once), a checkpoint
// every --save-every steps, the adapter (and PPO's value head) exported.
func TestFakeLoopCadence(t *testing.T) {
	for name, cfg := range fakeVariants(t) {
		t.Run(name, func(t *testing.T) {
			cfg.MaxSteps, cfg.EvalEvery, cfg.SaveEvery = 5, 2, 3
			var saved []int
			cfg.OnStep = func(step int) { saved = append(saved, newestCheckpoint(cfg.Out)) }
			res, err := runFake(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Steps != 5 || res.StoppedEarly || res.Before == nil || res.After == nil {
				t.Fatalf("result %+v", res)
			}
			var trainSteps, evalSteps []float64
			updates := 0
			for _, row := range readMetrics(t, cfg.Out) {
				switch row["split"] {
				case "train":
					trainSteps = append(trainSteps, row["step"].(float64))
					for _, k := range []string{"reward", "reward_std", "kl", "learning_rate"} {
						if _, ok := row[k].(float64); !ok {
							t.Errorf("train row %v lacks %q", row["step"], k)
						}
					}
					// the update's metrics, unless every GRPO group's rewards were
					// equal (no advantage: nothing to train on)
					updated := row["frac_reward_zero_std"] != 1.0
					if updated {
						updates++
					}
					for _, k := range []string{"clip_ratio", "approx_kl", "policy_loss", "grad_norm"} {
						if _, ok := row[k].(float64); ok != updated {
							t.Errorf("train row %v: %q present %v, an update %v", row["step"], k, ok, updated)
						}
					}
					if _, ok := row["value_loss"]; ok != (cfg.Method == PPO) {
						t.Errorf("train row %v: value_loss present %v for %s", row["step"], ok, cfg.Method)
					}
				case "eval":
					evalSteps = append(evalSteps, row["step"].(float64))
				}
			}
			if updates == 0 {
				t.Error("no step updated the policy")
			}
			if fmt.Sprint(trainSteps) != "[1 2 3 4 5]" || fmt.Sprint(evalSteps) != "[0 2 4 5]" {
				t.Errorf("train rows at steps %v, eval rows at %v", trainSteps, evalSteps)
			}
			// after steps 1..5 the newest checkpoint is of step 0 (none), 3, 3;
			// the last step's is written after the final evaluation
			if fmt.Sprint(saved) != "[-1 -1 3 3 3]" || newestCheckpoint(cfg.Out) != 5 {
				t.Errorf("newest checkpoint after each step %v, at the end %d", saved, newestCheckpoint(cfg.Out))
			}
			files := []string{"adapter.gguf", "summary.json", "config.json"}
			if cfg.Method == PPO {
				files = append(files, "value.gguf")
			}
			for _, f := range files {
				if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// A run interrupted after any step and resumed ends with the adapters of
// an uninterrupted run, byte for byte, and the same metrics (but for
// wall-clock times); PPO's adaptive KL coefficient and value set resume
// too.
func TestFakeResumeBitIdentical(t *testing.T) {
	for name, ref := range fakeVariants(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := runFake(context.Background(), ref); err != nil {
				t.Fatal(err)
			}
			files := []string{"adapter.gguf"}
			if ref.Method == PPO {
				files = append(files, "value.gguf")
			}
			want := map[string][]byte{}
			for _, f := range files {
				want[f], _ = os.ReadFile(filepath.Join(ref.Out, f))
			}
			wantRows := stripTimes(readMetrics(t, ref.Out))
			for _, stop := range []int{1, 2, 5} {
				cfg := ref
				cfg.Out = filepath.Join(t.TempDir(), "run")
				cfg.Scorer = &phrase{p: "z"}
				ctx, cancel := context.WithCancel(context.Background())
				cfg.OnStep = func(step int) {
					if step == stop {
						cancel()
					}
				}
				_, err := runFake(ctx, cfg)
				cancel()
				if !errors.Is(err, ErrInterrupted) {
					t.Fatalf("stop %d: err = %v", stop, err)
				}
				if _, err := runFake(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true}, Scorer: cfg.Scorer}); err != nil {
					t.Fatalf("stop %d: resume: %v", stop, err)
				}
				for _, f := range files {
					got, _ := os.ReadFile(filepath.Join(cfg.Out, f))
					if len(want[f]) == 0 || !bytes.Equal(got, want[f]) {
						t.Errorf("stop %d: resumed %s differs from the uninterrupted run's", stop, f)
					}
				}
				if got := stripTimes(readMetrics(t, cfg.Out)); got != wantRows {
					t.Errorf("stop %d: metrics differ after resume:\n%s\nvs\n%s", stop, got, wantRows)
				}
			}
		})
	}
}

// The policy learns on the fake: the phrase reward's held-out mean rises.
// (The closed-form policy samples "z" more as its θ rises.)
func TestFakeGRPOLearns(t *testing.T) {
	cfg := fakeConfig(t, GRPO)
	cfg.MaxSteps, cfg.Epochs, cfg.EvalSamples = 0, 3, 8
	res, err := runFake(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out reward %.3f -> %.3f over %d steps", res.Before["reward"], res.After["reward"], res.Steps)
	if !(res.After["reward"] > res.Before["reward"]+0.2) {
		t.Errorf("held-out reward %.3f -> %.3f: want a rise of 0.2", res.Before["reward"], res.After["reward"])
	}
}

// --max-kl stops a run after the step whose KL exceeds it, says so, and a
// resume of the stopped run trains no further and keeps its adapter.
func TestFakeMaxKLStops(t *testing.T) {
	cfg := fakeConfig(t, GRPO)
	cfg.MaxKL = 1e-12 // the first step's k3 exceeds it (the fake's base is not its policy)
	var notes []string
	cfg.Progress = func(ev Event) {
		if ev.Note != "" {
			notes = append(notes, ev.Note)
		}
	}
	res, err := runFake(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.StoppedEarly || res.Steps != 1 || !strings.Contains(strings.Join(notes, "\n"), "exceeds --max-kl") {
		t.Fatalf("stopped early %v after %d steps; notes %q", res.StoppedEarly, res.Steps, notes)
	}
	want, _ := os.ReadFile(res.Adapter)
	again, err := runFake(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true}, Scorer: cfg.Scorer})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(again.Adapter)
	if again.Steps != 1 || !again.StoppedEarly || !bytes.Equal(got, want) {
		t.Errorf("resumed: %d steps, stopped early %v, same adapter %v", again.Steps, again.StoppedEarly, bytes.Equal(got, want))
	}
}

// A paid reward (openai:) under --max-usd: the run stops at the cap with
// a budget error, a checkpoint and every call in the ledger; a resume with
// a higher cap ends with the uncapped run's adapter.
func TestFakeSpendCapStopsGRPO(t *testing.T) {
	ja := newLengthJudge(t)
	a := fakeConfig(t, GRPO)
	a.Scorer, a.Reward = nil, "openai:"+ja.url+"/v1#fake"
	a.EvalPrompts = ""
	a.MaxSteps = 4
	if _, err := runFake(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	prices := filepath.Join(t.TempDir(), "prices.json")
	os.WriteFile(prices, []byte(`{"models":{"fake":{"input_per_1k":0,"output_per_1k":1}}}`), 0o644)
	jb := newLengthJudge(t)
	b := a
	b.Out = filepath.Join(t.TempDir(), "run")
	b.Reward = "openai:" + jb.url + "/v1#fake"
	b.Prices = prices
	capUSD := 1.07 // a call's worst case is $1.024 (the 1,024-token ceiling)
	b.MaxUSD = &capUSD
	_, err := runFake(context.Background(), b)
	if !cost.IsBudget(err) {
		t.Fatalf("capped run: %v, want a budget error", err)
	}
	first := jb.count()
	if first == 0 || first >= ja.count() || !run.HasCheckpoint(b.Out) {
		t.Fatalf("capped run made %d calls of %d; checkpoint kept %v", first, ja.count(), run.HasCheckpoint(b.Out))
	}
	ledger, err := os.ReadFile(filepath.Join(b.Out, LedgerFile))
	if err != nil || strings.Count(string(ledger), "\n") != first {
		t.Fatalf("ledger: %v, %d lines for %d calls", err, strings.Count(string(ledger), "\n"), first)
	}
	more := 100.0
	if _, err := runFake(context.Background(), Config{Common: run.Common{Out: b.Out, Resume: true}, MaxUSD: &more}); err != nil {
		t.Fatal(err)
	}
	x, _ := os.ReadFile(filepath.Join(a.Out, "adapter.gguf"))
	y, _ := os.ReadFile(filepath.Join(b.Out, "adapter.gguf"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("adapters differ after the capped run's resume")
	}
}
