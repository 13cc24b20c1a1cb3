package rl

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/bindings"
)

var fixtureDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "align-rl-test-")
	if err != nil {
		panic(err)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixture is a seeded random-weight model of the given type.
func fixture(t testing.TB, typ string) string {
	t.Helper()
	p := filepath.Join(fixtureDir, "llama-"+typ+".gguf")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := bindings.WriteFixture(p, bindings.FixtureParams{Arch: "llama", Type: typ, Size: "tiny", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return p
}

// phrase is the toy verifiable reward: 1 when the reply contains the
// preferred phrase, else 0 (the random tiny model's replies contain "z"
// about one time in five at 16 tokens).
type phrase struct {
	p     string
	calls int
}

func (s *phrase) Score(_ context.Context, xs []reward.Sample) ([]float64, error) {
	s.calls++
	out := make([]float64, len(xs))
	for i, x := range xs {
		if strings.Contains(x.Response, s.p) {
			out[i] = 1
		}
	}
	return out, nil
}
func (s *phrase) Terms() []string { return []string{"contains:" + s.p + "=1"} }
func (s *phrase) Close() error    { return nil }

var _ reward.Scorer = (*phrase)(nil)

const (
	toyPrompts = "../../testdata/prompts/rl-toy.jsonl"
	toyEval    = "../../testdata/prompts/rl-toy-eval.jsonl"
)

// toyConfig is a small run of method on the tiny fixture with the phrase
// reward.
func toyConfig(t testing.TB, method string) Config {
	cfg := Defaults(method)
	cfg.Model = fixture(t, "q8_0")
	cfg.Prompts, cfg.EvalPrompts = toyPrompts, toyEval
	cfg.Out = filepath.Join(t.TempDir(), "run")
	cfg.Scorer = &phrase{p: "z"}
	cfg.Reward = "contains:z"
	cfg.MaxNewTokens = 16
	cfg.Threads = 2
	cfg.Epochs = 1
	cfg.EvalSamples = 4
	cfg.Rank, cfg.Alpha = 8, 16
	cfg.Targets = []string{"q", "k", "v", "o", "gate", "up", "down"}
	return cfg
}

func readMetrics(t testing.TB, dir string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("metrics.jsonl: %v", err)
		}
		rows = append(rows, row)
	}
	return rows
}

func TestSmoke(t *testing.T) {
	for _, method := range []string{PPO, GRPO} {
		t.Run(method, func(t *testing.T) {
			cfg := toyConfig(t, method)
			cfg.MaxSteps = 2
			cfg.Progress = func(ev Event) { t.Logf("%+v", ev) }
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			for _, row := range readMetrics(t, cfg.Out) {
				b, _ := json.Marshal(row)
				t.Logf("%s", b)
			}
		})
	}
}

// learn runs method on the phrase reward and reports the held-out reward
// before and after, and the held-out KL after.
func learn(t *testing.T, cfg Config) (before, after, kl float64) {
	t.Helper()
	cfg.Progress = func(ev Event) {
		if ev.Note != "" || ev.Done%3 == 0 {
			t.Logf("%s %d/%d %s%s", ev.Phase, ev.Done, ev.Total, ev.Stats, ev.Note)
		}
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out before %v", res.Before)
	t.Logf("held-out after  %v", res.After)
	return res.Before["reward"], res.After["reward"], res.After["kl"]
}

func TestTune(t *testing.T) {
	if os.Getenv("RL_TUNE") == "" {
		t.Skip("tuning only")
	}
	cfg := toyConfig(t, os.Getenv("RL_TUNE"))
	if v := os.Getenv("RL_LR"); v != "" {
		json.Unmarshal([]byte(v), &cfg.LR)
	}
	if v := os.Getenv("RL_EPOCHS"); v != "" {
		json.Unmarshal([]byte(v), &cfg.Epochs)
	}
	if v := os.Getenv("RL_KL"); v != "" {
		json.Unmarshal([]byte(v), &cfg.KLCoef)
		cfg.Beta = cfg.KLCoef
	}
	if v := os.Getenv("RL_GROUP"); v != "" {
		json.Unmarshal([]byte(v), &cfg.Group)
	}
	if v := os.Getenv("RL_PPOEPOCHS"); v != "" {
		json.Unmarshal([]byte(v), &cfg.PPOEpochs)
	}
	if v := os.Getenv("RL_MB"); v != "" {
		json.Unmarshal([]byte(v), &cfg.MiniBatches)
	}
	if v := os.Getenv("RL_VLR"); v != "" {
		json.Unmarshal([]byte(v), &cfg.ValueLR)
	}
	if v := os.Getenv("RL_BATCH"); v != "" {
		json.Unmarshal([]byte(v), &cfg.BatchPrompts)
	}
	if v := os.Getenv("RL_PHRASE"); v != "" {
		cfg.Scorer = &phrase{p: v}
	}
	cfg.EvalEvery = 3
	learn(t, cfg)
}
