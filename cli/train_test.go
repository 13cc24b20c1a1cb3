package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/align-dev/align/align/pairs"
)

// trainArgs is a small DPO run on the shipped pairs.
func trainArgs(t *testing.T, out, data string) []string {
	return []string{"train", "--method", "dpo", "--model", tinyModel, "--data", data, "--eval-split", "0.25",
		"--out", out, "--epochs", "2", "--batch-tokens", "384", "--save-every", "3", "--threads", "2"}
}

// startTrain runs align train as a real process and signals it once
// metrics.jsonl holds at least rows train rows; it returns the exit code.
func startTrain(t *testing.T, args []string, out string, rows int, sig syscall.Signal) int {
	t.Helper()
	cmd, stderr, exited := startHelper(t, args)
	deadline := time.After(2 * time.Minute)
	for signalled := false; ; {
		select {
		case <-exited:
			code := cmd.ProcessState.ExitCode()
			if sig == syscall.SIGINT && code != ExitResumable {
				t.Errorf("exit code %d after SIGINT, want %d; stderr:\n%s", code, ExitResumable, stderr.String())
			}
			if sig == syscall.SIGINT && !strings.Contains(stderr.String(), "align: error: step ") {
				t.Errorf("stderr lacks the one-line interruption message:\n%s", stderr.String())
			}
			return code
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("train did not finish; stderr:\n%s", stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if signalled {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
		if strings.Count(string(b), `"split":"train"`) >= rows {
			cmd.Process.Signal(sig)
			signalled = true
		}
	}
}

// SIGINT saves a checkpoint and exits 4; SIGKILL loses only the steps
// since the last checkpoint; both resume to the adapter of an
// uninterrupted run, byte for byte.
func TestTrainSignalsAndResume(t *testing.T) {
	ps, _, err := pairs.Load("../testdata/pairs/train.jsonl", pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "train.jsonl")
	if err := pairs.Save(data, ps[:64]); err != nil {
		t.Fatal(err)
	}
	ref := t.TempDir()
	if code, _, errs := run(t, "", trainArgs(t, ref, data)...); code != 0 {
		t.Fatalf("uninterrupted run: exit %d: %s", code, errs)
	}
	want, err := os.ReadFile(filepath.Join(ref, "adapter.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		out := t.TempDir()
		startTrain(t, trainArgs(t, out, data), out, 5, sig)
		if _, err := os.Stat(filepath.Join(out, "summary.json")); err == nil {
			t.Fatalf("%v arrived after the run had finished", sig)
		}
		code, _, errs := run(t, "", "train", "--resume", out, "--threads", "2")
		if code != 0 {
			t.Fatalf("%v: resume exit %d: %s", sig, code, errs)
		}
		got, _ := os.ReadFile(filepath.Join(out, "adapter.gguf"))
		if !bytes.Equal(got, want) {
			t.Errorf("%v: resumed adapter differs from the uninterrupted run", sig)
		}
	}
}

func TestTrainUsage(t *testing.T) {
	code, _, errs := run(t, "", "train", "--method", "dpo")
	if code != ExitUsage || !strings.Contains(errs, "--model is required") {
		t.Errorf("exit %d: %s", code, errs)
	}
	code, _, errs = run(t, "", "train", "--method", "ppo", "--model", tinyModel, "--data", "x.jsonl", "--out", t.TempDir())
	if code != ExitError || !strings.Contains(errs, "--method") {
		t.Errorf("exit %d: %s", code, errs)
	}
}
