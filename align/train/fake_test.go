package train

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

	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/run/fake"
	"github.com/align-dev/align/bindings"
)

// fakeTrainer is the closed-form trainer of align/run/fake as a run's
// host: one set, the policy, which also has the reward head.
type fakeTrainer struct{ *fake.Set }

var (
	_ Trainer = (*fakeTrainer)(nil)
	_ host    = (*fakeTrainer)(nil)
)

// Policy is the fake's one set: itself.
func (f *fakeTrainer) Policy() Trainer { return f }

func newFake(n int) *fakeTrainer { return &fakeTrainer{fake.New(n)} }

func fakeOpener(f *fakeTrainer) opener {
	return func(string, bindings.TrainerOptions) (host, func() error, error) {
		return f, func() error { return nil }, nil
	}
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
			// config.json holds KTO's example weights for KTO runs only
			raw, err := os.ReadFile(filepath.Join(cfg.Out, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if has := strings.Contains(string(raw), `"DesirableWeight"`); has != (method == KTO) {
				t.Errorf("config.json of a %s run: DesirableWeight written %v", method, has)
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
			if train != res.Steps || f.Calls["step"] != res.Steps {
				t.Errorf("%d train rows and %d optimiser steps for %d steps", train, f.Calls["step"], res.Steps)
			}
			// one evaluation per eval row and no other (the final one runs once);
			// KTO also scores the mismatched sequences of z0 (one forward
			// per micro-batch, in evaluation and in each training step)
			want := passes * perPass
			if method == KTO {
				want = 2*passes*perPass + f.Calls["forward_grad"]
			}
			if passes != evals || f.Calls["forward@1"] != want || evals < 2 {
				t.Errorf("%d evaluation passes (%d forwards, %d per pass) for %d eval rows", passes, f.Calls["forward@1"], perPass, evals)
			}
			// a method without a reference (SFT, RM, ORPO, SimPO) runs no
			// reference pass and keeps no reference log-probs
			_, refFile := os.Stat(filepath.Join(cfg.Out, "reference.json"))
			if needs := newObjective(cfg).needsReference(); !needs && (f.Calls["forward@0"] != 0 || refs != 0 || refFile == nil) {
				t.Errorf("%s computed reference log-probs: %d forwards, %d passes, reference.json kept: %v", method, f.Calls["forward@0"], refs, refFile == nil)
			} else if needs && (f.Calls["forward@0"] == 0 || refs != 1 || refFile != nil) {
				t.Errorf("reference pass: %d forwards, %d completed progress passes, reference.json: %v", f.Calls["forward@0"], refs, refFile)
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
