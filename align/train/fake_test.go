package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/align-dev/align/align/run"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/bindings"
)

// fakeTrainer is a Trainer with a closed-form model: each token id j has
// one parameter θ[j mod n] and log p(token) = log σ(θ[j mod n]), so a
// sequence's log-prob and its gradient are exact and cheap. AdamW is the
// textbook update, so checkpoints and resume behave as with the engine.
type fakeTrainer struct {
	theta, m, v, grad []float64
	step              int64
	last              *bindings.Batch // of the last ForwardGrad
	calls             map[string]int
}

var (
	_ Trainer = (*fakeTrainer)(nil)
	_ host    = (*fakeTrainer)(nil)
)

// Policy is the fake's one set: itself.
func (f *fakeTrainer) Policy() Trainer { return f }

func (f *fakeTrainer) NParams() (int64, error) { return int64(len(f.theta)), nil }

func newFake(n int) *fakeTrainer {
	f := &fakeTrainer{theta: make([]float64, n), m: make([]float64, n), v: make([]float64, n), grad: make([]float64, n), calls: map[string]int{}}
	for i := range f.theta {
		f.theta[i] = float64(float32(0.01 * float64(i%7-3)))
	}
	return f
}

func fakeOpener(f *fakeTrainer) opener {
	return func(string, bindings.TrainerOptions) (host, func() error, error) {
		return f, func() error { return nil }, nil
	}
}

func logSig(x float64) float64 { return logSigmoid(x) }

func (f *fakeTrainer) forward(b *bindings.Batch, scale float64) Outputs {
	out := Outputs{Sums: make([]float64, b.NSeq)}
	for k := 0; k < b.NSeq; k++ {
		for t := 0; t < b.NTok; t++ {
			if b.Scored[k*b.NTok+t] != 0 {
				lp := logSig(scale * f.theta[int(b.Tokens[k*b.NTok+t])%len(f.theta)])
				out.Sums[k] += lp
				out.Logps = append(out.Logps, float32(lp))
			}
		}
	}
	if b.HeadAt != nil {
		// the head at position t is the mean of θ over tokens 0..t, times scale
		for k := 0; k < b.NSeq; k++ {
			var sum float64
			for t := 0; t < int(b.Lengths[k]); t++ {
				sum += f.theta[int(b.Tokens[k*b.NTok+t])%len(f.theta)]
				if b.HeadAt[k*b.NTok+t] != 0 {
					out.Heads = append(out.Heads, float32(scale*sum/float64(t+1)))
				}
			}
		}
	}
	return out
}

// Backward is the tokens' gradient plus the head values' (see forward).
func (f *fakeTrainer) Backward(cot, headCot []float32) error {
	if err := f.backwardTokens(cot); err != nil {
		return err
	}
	b, i := f.last, 0
	if headCot == nil {
		return nil
	}
	if b.HeadAt == nil {
		return errors.New("fake: head cotangents without head positions")
	}
	for k := 0; k < b.NSeq; k++ {
		for t := 0; t < int(b.Lengths[k]); t++ {
			if b.HeadAt[k*b.NTok+t] == 0 {
				continue
			}
			if i >= len(headCot) {
				return errors.New("fake: too few head cotangents")
			}
			for u := 0; u <= t; u++ {
				f.grad[int(b.Tokens[k*b.NTok+u])%len(f.theta)] += float64(headCot[i]) / float64(t+1)
			}
			i++
		}
	}
	if i != len(headCot) {
		return errors.New("fake: too many head cotangents")
	}
	return nil
}

func (f *fakeTrainer) Forward(b *bindings.Batch, scale float32) (Outputs, error) {
	f.calls[fmt.Sprintf("forward@%g", scale)]++
	return f.forward(b, float64(scale)), nil
}

func (f *fakeTrainer) ForwardGrad(b *bindings.Batch) (Outputs, error) {
	f.calls["forward_grad"]++
	f.last = b
	return f.forward(b, 1), nil
}

func (f *fakeTrainer) backwardTokens(cot []float32) error {
	f.calls["backward"]++
	b, i := f.last, 0
	for k := 0; k < b.NSeq; k++ {
		for t := 0; t < b.NTok; t++ {
			if b.Scored[k*b.NTok+t] == 0 {
				continue
			}
			if i >= len(cot) {
				return errors.New("fake: too few cotangents")
			}
			j := int(b.Tokens[k*b.NTok+t]) % len(f.theta)
			f.grad[j] += float64(cot[i]) * sigmoid(-f.theta[j]) // d log σ(θ)/dθ = σ(−θ)
			i++
		}
	}
	if i != len(cot) {
		return errors.New("fake: too many cotangents")
	}
	return nil
}

func (f *fakeTrainer) GradNorm(scale float64) (float64, error) {
	var s float64
	for _, g := range f.grad {
		s += g * g
	}
	return math.Sqrt(s) * scale, nil
}

func (f *fakeTrainer) Step(p bindings.AdamW) error {
	f.calls["step"]++
	f.step++
	b1, b2 := float64(p.Beta1), float64(p.Beta2)
	// state is rounded to float32, as the engine keeps it, so a
	// checkpoint (float32) restores it exactly
	r := func(x float64) float64 { return float64(float32(x)) }
	for i := range f.theta {
		g := f.grad[i] * float64(p.GradScale)
		f.m[i] = r(b1*f.m[i] + (1-b1)*g)
		f.v[i] = r(b2*f.v[i] + (1-b2)*g*g)
		mh := f.m[i] / (1 - math.Pow(b1, float64(f.step)))
		vh := f.v[i] / (1 - math.Pow(b2, float64(f.step)))
		f.theta[i] = r(f.theta[i] - float64(p.LR)*(mh/(math.Sqrt(vh)+float64(p.Eps))+float64(p.WeightDecay)*f.theta[i]))
		f.grad[i] = 0
	}
	return nil
}

func f32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

func (f *fakeTrainer) GetState() (bindings.State, error) {
	return bindings.State{Params: f32(f.theta), M: f32(f.m), V: f32(f.v), Grads: f32(f.grad), Step: f.step}, nil
}

func (f *fakeTrainer) SetState(params, m, v []float32, step int64) error {
	for _, x := range []struct {
		src []float32
		dst []float64
	}{{params, f.theta}, {m, f.m}, {v, f.v}} {
		if x.src == nil {
			continue
		}
		for i := range x.dst {
			x.dst[i] = float64(x.src[i])
		}
	}
	f.step = step
	return nil
}

func (f *fakeTrainer) Export(path string) error {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, f32(f.theta))
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func (f *fakeTrainer) Info() bindings.TrainerInfo {
	return bindings.TrainerInfo{Arch: "fake", NVocab: 1000, NLoRAParams: int64(len(f.theta))}
}

// fakeParams covers the fixture's vocabulary, so tokens do not share a parameter.
const fakeParams = 1 << 15

// fakeRun is a small run over the shipped pairs for the fake trainer.
func fakeRun(t *testing.T, method string) Config {
	cfg := Defaults(method)
	cfg.Model, cfg.Out = tinyModel, filepath.Join(t.TempDir(), "run")
	cfg.Data, cfg.EvalData = subset(t, trainData, 24), subset(t, evalData, 8)
	cfg.Epochs, cfg.BatchTokens, cfg.GradAccum, cfg.SaveEvery, cfg.EvalEvery, cfg.WarmupSteps = 3, 384, 2, 2, 3, 1
	cfg.LR, cfg.RPOAlpha = 0.05, 0.5
	return cfg
}

func metricRows(t *testing.T, out string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("bad metrics row %q", line)
		}
		rows = append(rows, row)
	}
	return rows
}

// The loop against the fake: every method learns (held-out loss falls),
// one train row per step, each (split, step) logged once, and the final
// evaluation runs once (forwards at scale 1 are evaluations only).
func TestLoopWithFakeTrainer(t *testing.T) {
	for _, method := range Methods {
		t.Run(method, func(t *testing.T) {
			f := newFake(fakeParams)
			cfg := fakeRun(t, method)
			passes, perPass, refs := 0, 0, 0
			progress := func(ev Event) {
				if ev.Phase == "eval" && ev.Done == ev.Total {
					passes, perPass = passes+1, ev.Total
				}
				if ev.Phase == "reference" && ev.Done == ev.Total && ev.Total > 0 {
					refs++
				}
				if ev.ETA < 0 || (ev.Done == ev.Total && ev.ETA != 0) {
					t.Errorf("event %+v: an ETA with nothing left", ev)
				}
			}
			res, err := runWith(context.Background(), cfg, progress, fakeOpener(f))
			if err != nil {
				t.Fatal(err)
			}
			if !(res.After["loss"] < res.Before["loss"]) {
				t.Errorf("held-out loss %g → %g, want it to fall", res.Before["loss"], res.After["loss"])
			}
			if method != SFT && !(res.After["rewards/margins"] > 0) {
				t.Errorf("held-out margin after training %g, want > 0", res.After["rewards/margins"])
			}
			seen := map[string]bool{}
			train, evals := 0, 0
			for _, row := range metricRows(t, cfg.Out) {
				key := fmt.Sprint(row["split"], "/", row["step"])
				if seen[key] {
					t.Errorf("row %s logged twice", key)
				}
				seen[key] = true
				switch row["split"] {
				case "train":
					train++
				case "eval":
					evals++
				}
			}
			if train != res.Steps || f.calls["step"] != res.Steps {
				t.Errorf("%d train rows and %d optimiser steps for %d steps", train, f.calls["step"], res.Steps)
			}
			// one evaluation per eval row and no other (the final one runs once);
			// KTO also scores the mismatched sequences of z0 (one forward
			// per micro-batch, in evaluation and in each training step)
			want := passes * perPass
			if method == KTO {
				want = 2*passes*perPass + f.calls["forward_grad"]
			}
			if passes != evals || f.calls["forward@1"] != want || evals < 2 {
				t.Errorf("%d evaluation passes (%d forwards, %d per pass) for %d eval rows", passes, f.calls["forward@1"], perPass, evals)
			}
			// a method without a reference (SFT, RM, ORPO, SimPO) runs no
			// reference pass and keeps no reference log-probs
			_, refFile := os.Stat(filepath.Join(cfg.Out, "reference.json"))
			if needs := newObjective(cfg).needsReference(); !needs && (f.calls["forward@0"] != 0 || refs != 0 || refFile == nil) {
				t.Errorf("%s computed reference log-probs: %d forwards, %d passes, reference.json kept: %v", method, f.calls["forward@0"], refs, refFile == nil)
			} else if needs && (f.calls["forward@0"] == 0 || refs != 1 || refFile != nil) {
				t.Errorf("reference pass: %d forwards, %d completed progress passes, reference.json: %v", f.calls["forward@0"], refs, refFile)
			}
		})
	}
}

// A run interrupted at any step and resumed ends with the adapter of an
// uninterrupted run, bit for bit, and its metrics read as one run.
func TestFakeResumeIsBitIdentical(t *testing.T) {
	for _, variant := range []string{DPO, SFT, RM, ORPO, SimPO, "patience"} {
		method := variant
		tweak := func(c *Config) {}
		if variant == "patience" {
			method = SFT
			tweak = func(c *Config) { c.EvalEvery, c.Patience = 1, 1 }
		}
		ref := fakeRun(t, method)
		tweak(&ref)
		if _, err := runWith(context.Background(), ref, nil, fakeOpener(newFake(fakeParams))); err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(ref.Out, "adapter.gguf"))
		wantRows := len(metricRows(t, ref.Out))
		for stop := 1; stop <= 7; stop += 3 {
			cfg := fakeRun(t, method)
			tweak(&cfg)
			cfg.Data, cfg.EvalData = ref.Data, ref.EvalData
			ctx, cancel := context.WithCancel(context.Background())
			cfg.OnStep = func(step int) {
				if step == stop {
					cancel()
				}
			}
			_, err := runWith(ctx, cfg, nil, fakeOpener(newFake(fakeParams)))
			cancel()
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("%s stop %d: err = %v", variant, stop, err)
			}
			res, err := runWith(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true}}, nil, fakeOpener(newFake(fakeParams)))
			if err != nil {
				t.Fatalf("%s stop %d: resume: %v", variant, stop, err)
			}
			got, _ := os.ReadFile(res.Adapter)
			if !bytes.Equal(got, want) || len(want) == 0 {
				t.Errorf("%s stop %d: resumed adapter differs from the uninterrupted run", variant, stop)
			}
			if n := len(metricRows(t, cfg.Out)); n != wantRows {
				t.Errorf("%s stop %d: %d metrics rows, uninterrupted run %d", variant, stop, n, wantRows)
			}
		}
	}
}

// Issue 7 item 1: --force replaces only what align wrote: not the new
// run's own inputs kept in the folder, not a folder whose config.json is
// someone else's.
func TestForceKeepsWhatAlignDidNotWrite(t *testing.T) {
	cfg := fakeRun(t, SFT)
	cfg.Epochs = 1
	if _, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams))); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(cfg.Out, "data.jsonl")
	b, _ := os.ReadFile(cfg.Data)
	os.WriteFile(mine, b, 0o644)
	cfg.Data, cfg.Force = mine, true
	if _, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams))); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(mine); !bytes.Equal(got, b) {
		t.Error("--force deleted the run's own input")
	}

	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "config.json"), []byte(`{"editor": "vim"}`), 0o644)
	cfg.Out = other
	var ce *ConfigError
	if _, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams))); !errors.As(err, &ce) || ce.Flag != "out" {
		t.Errorf("a folder with someone else's config.json: err = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(other, "config.json")); string(got) != `{"editor": "vim"}` {
		t.Error("--force replaced someone else's config.json")
	}
}

// Resuming a run that early stopping ended neither trains further nor
// changes its adapter.
func TestResumeAfterEarlyStop(t *testing.T) {
	cfg := fakeRun(t, DPO)
	// held-out preferences reversed: the held-out margin only falls
	ps := subset(t, evalData, 8)
	b, _ := os.ReadFile(ps)
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row map[string]any
		json.Unmarshal([]byte(line), &row)
		row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
		out, _ := json.Marshal(row)
		lines = append(lines, string(out))
	}
	os.WriteFile(ps, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	cfg.EvalData, cfg.EvalEvery, cfg.Patience, cfg.RPOAlpha = ps, 1, 2, 0
	res, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams)))
	if err != nil || !res.StoppedEarly {
		t.Fatalf("stopped early %v, %v", res.StoppedEarly, err)
	}
	want, _ := os.ReadFile(res.Adapter)
	again, err := runWith(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true}}, nil, fakeOpener(newFake(fakeParams)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(again.Adapter)
	if again.Steps != res.Steps || !again.StoppedEarly || !bytes.Equal(got, want) {
		t.Errorf("resumed: %d steps (was %d), stopped early %v, same adapter %v", again.Steps, res.Steps, again.StoppedEarly, bytes.Equal(got, want))
	}
}
