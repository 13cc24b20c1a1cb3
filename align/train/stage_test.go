package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/testgate"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/bindings"
)

// stageFixture is an F32 tiny model (llama.cpp agrees with the trainer to
// 5e-3 per token on F32, TestTrainerForwardMatchesLlama).
func stageFixture(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny-f32.gguf")
	if err := bindings.WriteFixture(p, bindings.FixtureParams{Arch: "llama", Type: "f32", Size: "tiny", Seed: 3}); err != nil {
		t.Fatal(err)
	}
	return p
}

func stageRun(t *testing.T, method, model, data, eval string) Config {
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = method, model, data, eval, t.TempDir()
	cfg.Epochs, cfg.BatchTokens, cfg.WarmupSteps, cfg.LR = 1, 512, 0, 3e-3
	cfg.Rank, cfg.Alpha, cfg.Targets = 4, 8, []string{"q", "k", "v", "o", "gate", "up", "down"}
	cfg.Threads = 2
	return cfg
}

// metricRows reads a run's metrics.jsonl rows of one split.
func splitRows(t *testing.T, out, split string) []map[string]float64 {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []map[string]float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var raw map[string]any
		if json.Unmarshal(sc.Bytes(), &raw) != nil || raw["split"] != split {
			continue
		}
		row := map[string]float64{}
		for k, v := range raw {
			if x, ok := v.(float64); ok {
				row[k] = x
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// probeOpener opens the native trainer and, when the run closes it, scores
// probe's texts with the final policy (set 0 at scale 1): the trainer's
// own forward, for comparison with llama.cpp and the exported adapter.
func probeOpener(t *testing.T, texts []string, got *bindings.Outputs, batch **bindings.Batch) opener {
	return func(model string, opt bindings.TrainerOptions) (host, func() error, error) {
		tr, err := bindings.NewTrainerFromFile(model, opt)
		if err != nil {
			return nil, nil, err
		}
		return native{tr}, func() error {
			b := probeBatch(t, tr.Model(), texts)
			out, err := tr.Set(0).Forward(b, 1)
			if err != nil {
				t.Errorf("probe forward: %v", err)
			}
			*got, *batch = out, b
			return tr.Close()
		}, nil
	}
}

func probeBatch(t *testing.T, m *bindings.Model, texts []string) *bindings.Batch {
	var seqs [][]int32
	n := 0
	for _, s := range texts {
		toks, err := m.Tokenize(s, true, false)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, toks)
		n = max(n, len(toks))
	}
	b := &bindings.Batch{NSeq: len(seqs), NTok: n, Tokens: make([]int32, len(seqs)*n), Lengths: make([]int32, len(seqs)), Scored: make([]uint8, len(seqs)*n)}
	for i, s := range seqs {
		copy(b.Tokens[i*n:], s)
		b.Lengths[i] = int32(len(s))
		for j := 1; j < len(s); j++ {
			b.Scored[i*n+j] = 1
		}
	}
	return b
}

// llamaLogps is llama.cpp's per-token log-probs of b's sequences under
// model + adapter.
func llamaLogps(t *testing.T, model, adapter string, b *bindings.Batch) []float32 {
	t.Helper()
	m, err := bindings.LoadModel(model, bindings.ModelOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var as []bindings.LoRAScale
	if adapter != "" {
		l, err := bindings.LoadLoRA(m, adapter)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		as = []bindings.LoRAScale{{LoRA: l, Scale: 1}}
	}
	s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: 512, Adapters: as})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []float32
	for i := 0; i < b.NSeq; i++ {
		lp, err := s.LogProbs(context.Background(), b.Tokens[i*b.NTok:i*b.NTok+int(b.Lengths[i])])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lp...)
	}
	return out
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

var probeTexts = []string{"Is Berserk finished? Berserk is ongoing, with 42 volumes so far.", "Thanks for your patience! A teammate will help you."}

// SFT, then DPO with the SFT adapter as the reference: at step 0 the
// policy equals the reference (every margin exactly 0, at the held-out
// evaluation and in the first training step), the run moves the policy,
// and its adapter.gguf alone reproduces the policy in llama.cpp.
func TestStagesSFTThenDPO(t *testing.T) {
	testgate.Slow(t, "three short engine runs (about 20 s on 2 cores); in make test's list of slow tests")
	model := stageFixture(t)
	data, eval := subset(t, trainData, 32), subset(t, evalData, 12)

	sft := stageRun(t, SFT, model, data, eval)
	sft.MaxSteps = 6
	sres, err := Run(context.Background(), sft, nil)
	if err != nil {
		t.Fatal(err)
	}

	dpo := stageRun(t, DPO, model, data, eval)
	dpo.Rank, dpo.Alpha, dpo.Targets = 0, 0, nil // from the adapter
	dpo.RefAdapter, dpo.MaxSteps, dpo.RPOAlpha = sres.Adapter, 6, 0
	var probe bindings.Outputs
	var pb *bindings.Batch
	res, err := runWith(context.Background(), dpo, nil, probeOpener(t, probeTexts, &probe, &pb))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rewards/margins", "rewards/chosen", "rewards/rejected", "rewards/accuracies"} {
		// a mean of β(π − ρ) over pairs is exactly 0.0 only when each term is
		if v, ok := res.Before[k]; !ok || v != 0 {
			t.Errorf("held-out %s at step 0 = %v, want exactly 0 (policy == SFT reference)", k, v)
		}
	}
	first := splitRows(t, dpo.Out, "train")
	if len(first) == 0 {
		t.Fatal("no train rows")
	}
	// the training forward (forward_grad) is another graph than the
	// evaluation's forward: it agrees with it to float rounding, not bits
	for _, k := range []string{"rewards/margins", "rewards/chosen", "rewards/rejected"} {
		if v := first[0][k]; math.Abs(v) > 1e-5 {
			t.Errorf("first training step's %s = %g, want 0 within float rounding (policy == SFT reference)", k, v)
		}
	}
	t.Logf("first training step (forward_grad at step 0): margins %.2e, chosen %.2e, rejected %.2e, loss %.9f",
		first[0]["rewards/margins"], first[0]["rewards/chosen"], first[0]["rewards/rejected"], first[0]["loss"])
	if !(res.After["rewards/margins"] > 0) {
		t.Errorf("held-out margin after DPO = %v, want > 0", res.After["rewards/margins"])
	}
	var saved Config
	readJSON(filepath.Join(dpo.Out, "config.json"), &saved)
	if saved.Rank != 4 || saved.Alpha != 8 || len(saved.Targets) != 7 || saved.Hashes["ref_adapter"] == "" {
		t.Errorf("run config has rank %d, alpha %g, targets %v, ref hash %q; want the SFT adapter's 4, 8, all 7 and a hash",
			saved.Rank, saved.Alpha, saved.Targets, saved.Hashes["ref_adapter"])
	}

	// the exported adapter alone, in llama.cpp, is the final policy
	lc := llamaLogps(t, model, res.Adapter, pb)
	d := maxDiff(lc, probe.Logps)
	sftOnly := llamaLogps(t, model, sres.Adapter, pb)
	moved := maxDiff(sftOnly, probe.Logps)
	t.Logf("llama.cpp with the DPO run's adapter vs the trainer's policy: max |Δ log-prob| %.2e; the DPO stage moved the SFT policy by %.2e",
		d, moved)
	if d > 5e-3 {
		t.Errorf("llama.cpp with the exported adapter differs from the policy by %.3g per token (tolerance 5e-3)", d)
	}
	if moved < 10*5e-3 {
		t.Errorf("the DPO stage moved log-probs by %.2e only: the check cannot tell the SFT adapter from the DPO one", moved)
	}

	// counterfactual: the same policy start against the plain base is not
	// at margin 0, so the reference above really was base + SFT
	alt := stageRun(t, DPO, model, data, eval)
	alt.Rank, alt.Alpha, alt.Targets = 0, 0, nil
	alt.InitAdapter, alt.MaxSteps = sres.Adapter, 1
	ares, err := Run(context.Background(), alt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ares.Before["rewards/chosen"] == 0 {
		t.Errorf("--init-adapter against the base: step-0 rewards/chosen = 0; want the SFT update to show against the base")
	}
}

// A two-stage run resumes to the uninterrupted run's adapter, byte for
// byte, and refuses to resume when the reference adapter changed.
func TestStagesResume(t *testing.T) {
	testgate.Slow(t, "three short engine runs; TestStagesSFTThenDPO covers the stages")
	model := stageFixture(t)
	data, eval := subset(t, trainData, 24), subset(t, evalData, 8)
	sft := stageRun(t, SFT, model, data, eval)
	sft.MaxSteps = 3
	sres, err := Run(context.Background(), sft, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(t.TempDir(), "sft.gguf")
	b, _ := os.ReadFile(sres.Adapter)
	os.WriteFile(ref, b, 0o644)

	mk := func() Config {
		c := stageRun(t, DPO, model, data, eval)
		c.Rank, c.Alpha, c.Targets = 0, 0, nil
		c.RefAdapter, c.MaxSteps, c.SaveEvery, c.BatchTokens = ref, 6, 2, 256
		return c
	}
	whole := mk()
	if _, err := Run(context.Background(), whole, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(whole.Out, "adapter.gguf"))

	cut := mk()
	ctx, cancel := context.WithCancel(context.Background())
	cut.OnStep = func(step int) {
		if step == 3 {
			cancel()
		}
	}
	if _, err := Run(ctx, cut, nil); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	cancel()
	res, err := Run(context.Background(), Config{Common: run.Common{Out: cut.Out, Resume: true, Threads: 2}}, nil)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	got, _ := os.ReadFile(res.Adapter)
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Error("resumed two-stage run's adapter differs from the uninterrupted run's")
	}

	// the reference adapter changes under an interrupted run
	cut2 := mk()
	ctx2, cancel2 := context.WithCancel(context.Background())
	cut2.OnStep = func(step int) {
		if step == 2 {
			cancel2()
		}
	}
	if _, err := Run(ctx2, cut2, nil); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	cancel2()
	os.WriteFile(ref, want, 0o644) // another adapter of the same shape
	_, err = Run(context.Background(), Config{Common: run.Common{Out: cut2.Out, Resume: true, Threads: 2}}, nil)
	if err == nil || !strings.Contains(err.Error(), "--ref-adapter") || !strings.Contains(err.Error(), "changed") {
		t.Errorf("resume after the reference adapter changed: %v; want a refusal naming --ref-adapter", err)
	}
}

// Conflicting --lora-* flags, SFT with a reference, and files that are not
// LoRA adapters are refused with the flag named, before a run starts.
func TestStagesRejectBadSettings(t *testing.T) {
	model := stageFixture(t)
	data := subset(t, trainData, 8)
	adapter := filepath.Join(t.TempDir(), "a.gguf")
	tr, err := bindings.NewTrainerFromFile(model, bindings.TrainerOptions{Rank: 4, Alpha: 8, Targets: bindings.TargetQ | bindings.TargetV, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Set(0).Export(adapter); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	for _, c := range []struct {
		name string
		edit func(*Config)
		flag string
		want string
	}{
		{"rank", func(c *Config) { c.InitAdapter, c.Rank = adapter, 8 }, "lora-rank", "rank 4"},
		{"alpha", func(c *Config) { c.RefAdapter, c.Alpha = adapter, 16 }, "lora-alpha", "alpha 8"},
		{"targets", func(c *Config) { c.InitAdapter, c.Targets = adapter, []string{"q", "k"} }, "lora-targets", "adapts q,v"},
		{"sft ref", func(c *Config) { c.Method, c.RefAdapter = SFT, adapter }, "ref-adapter", "sft"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Model, cfg.Data, cfg.Out, cfg.Threads = model, data, t.TempDir(), 2
			cfg.Rank, cfg.Alpha, cfg.Targets = 0, 0, nil
			c.edit(&cfg)
			_, err := Run(context.Background(), cfg, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Flag != c.flag || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v; want a --%s error mentioning %q", err, c.flag, c.want)
			}
		})
	}
	for _, bad := range []string{model, data, filepath.Join(t.TempDir(), "missing.gguf")} {
		cfg := DefaultConfig()
		cfg.Model, cfg.Data, cfg.Out, cfg.Threads, cfg.InitAdapter = model, data, t.TempDir(), 2, bad
		cfg.Rank, cfg.Alpha, cfg.Targets = 0, 0, nil
		_, err := Run(context.Background(), cfg, nil)
		if err == nil || !strings.Contains(err.Error(), "--init-adapter") || !strings.Contains(err.Error(), filepath.Base(bad)) {
			t.Errorf("--init-adapter %s: %v; want an error naming the flag and the file", filepath.Base(bad), err)
		}
	}
}
