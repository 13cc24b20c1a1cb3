package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/align/dirlock"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// failingFake is the fake trainer whose optimiser step fails.
type failingFake struct{ *fakeTrainer }

func (f failingFake) Policy() Trainer           { return f }
func (f failingFake) Step(bindings.AdamW) error { return errors.New("step failed") }

// Issue 21: two align train into one run dir at once. The second, new
// (with --force) or resumed, refuses with the first one's pid, and the
// first run finishes as if alone.
func TestSecondRunIntoOneDirRefused(t *testing.T) {
	cfg := fakeRun(t, SFT)
	cfg.Epochs = 1
	var during []error
	cfg.OnStep = func(step int) {
		if step != 2 {
			return
		}
		again := cfg
		again.OnStep, again.Force = nil, true
		_, err := runWith(context.Background(), again, nil, fakeOpener(newFake(fakeParams)))
		during = append(during, err)
		_, err = runWith(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true}}, nil, fakeOpener(newFake(fakeParams)))
		during = append(during, err)
	}
	res, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams)))
	if err != nil {
		t.Fatal(err)
	}
	if len(during) != 2 {
		t.Fatalf("the run had %d steps", res.Steps)
	}
	for i, err := range during {
		var he *dirlock.HeldError
		if !errors.As(err, &he) || he.Holder.PID != os.Getpid() || he.Holder.What != "align train" {
			t.Errorf("second run %d: err = %v, want the run dir in use by this align train", i, err)
		}
	}
	if _, err := os.Stat(res.Adapter); err != nil {
		t.Errorf("the first run lost its adapter: %v", err)
	}
	if n := len(metricRows(t, cfg.Out)); n < res.Steps {
		t.Errorf("%d metrics rows for %d steps", n, res.Steps)
	}
	// finished: the dir is free again, and resuming it is a no-op
	if _, err := runWith(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true}}, nil, fakeOpener(newFake(fakeParams))); err != nil {
		t.Errorf("resume after the first run ended: %v", err)
	}
}

// A run that fails before its first checkpoint leaves a folder the user
// made as it was (no lock file), and removes one it created.
func TestFailedRunLeavesNoLockFile(t *testing.T) {
	for _, made := range []bool{false, true} {
		cfg := fakeRun(t, SFT)
		if made {
			os.Mkdir(cfg.Out, 0o755)
		}
		f := failingFake{newFake(fakeParams)}
		open := func(string, bindings.TrainerOptions) (host, func() error, error) {
			return f, func() error { return nil }, nil
		}
		if _, err := runWith(context.Background(), cfg, nil, open); err == nil {
			t.Fatal("the failing trainer did not fail the run")
		}
		ents, err := os.ReadDir(cfg.Out)
		switch {
		case made && (err != nil || len(ents) != 0):
			t.Errorf("the user's empty folder after a failed run: %v, %v", ents, err)
		case !made && !os.IsNotExist(err):
			t.Errorf("the folder the failed run created is still there: %v", err)
		}
		if made {
			if _, err := os.Stat(filepath.Join(cfg.Out, dirlock.Name)); !os.IsNotExist(err) {
				t.Errorf("lock file left: %v", err)
			}
		}
	}
}
