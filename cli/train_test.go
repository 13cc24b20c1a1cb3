package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/train"
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
	// a bad flag value is a usage error (exit 2), like in every other command
	code, _, errs = run(t, "", "train", "--method", "ppo", "--model", tinyModel, "--data", "x.jsonl", "--out", t.TempDir())
	if code != ExitUsage || !strings.Contains(errs, "--method") {
		t.Errorf("exit %d: %s", code, errs)
	}
}

// quickData writes the first n shipped pairs.
func quickData(t *testing.T, n int) string {
	t.Helper()
	ps, _, err := pairs.Load("../testdata/pairs/train.jsonl", pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "pairs.jsonl")
	if err := pairs.Save(data, ps[:n]); err != nil {
		t.Fatal(err)
	}
	return data
}

// quickArgs is a DPO run of a few steps, with a checkpoint every step.
func quickArgs(out, data string, steps int) []string {
	return []string{"train", "--method", "dpo", "--model", tinyModel, "--data", data, "--eval-split", "0.25", "--out", out,
		"--epochs", "1", "--max-steps", fmt.Sprint(steps), "--batch-tokens", "256", "--save-every", "1", "--warmup-steps", "0", "--threads", "2"}
}

func mustTrain(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, _, errs := run(t, stdin, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errs)
	}
	return errs
}

func slurp(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricKeys returns each metrics row's (split, step), failing on a repeat.
func uniqueRows(t *testing.T, out string) int {
	t.Helper()
	seen := map[string]bool{}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(slurp(t, filepath.Join(out, "metrics.jsonl"))), "\n") {
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("bad row %q", line)
		}
		key := fmt.Sprint(row["split"], "/", row["step"])
		if seen[key] {
			t.Errorf("metrics row %s appears twice", key)
		}
		seen[key] = true
		n++
	}
	return n
}

// Issue 7 item 1: --out on an existing run or a non-empty folder is
// refused; --force replaces only what align wrote.
func TestTrainRefusesUsedOut(t *testing.T) {
	data := quickData(t, 16)
	out := filepath.Join(t.TempDir(), "run")
	mustTrain(t, "", quickArgs(out, data, 1)...)
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(out, "checkpoints", "mine.txt"), []byte("mine too"), 0o644)
	adapter := slurp(t, filepath.Join(out, "adapter.gguf"))
	metrics := slurp(t, filepath.Join(out, "metrics.jsonl"))

	code, _, errs := run(t, "", quickArgs(out, data, 2)...)
	if code != ExitUsage || !strings.Contains(errs, "--resume") || !strings.Contains(errs, "--force") {
		t.Errorf("train into an existing run: exit %d: %s", code, errs)
	}
	if slurp(t, filepath.Join(out, "adapter.gguf")) != adapter || slurp(t, filepath.Join(out, "metrics.jsonl")) != metrics {
		t.Error("the refused run changed the existing one")
	}
	mustTrain(t, "", append(quickArgs(out, data, 2), "--force")...)
	if slurp(t, filepath.Join(out, "notes.txt")) != "mine" || slurp(t, filepath.Join(out, "checkpoints", "mine.txt")) != "mine too" {
		t.Error("--force deleted files align did not write")
	}
	if n := strings.Count(slurp(t, filepath.Join(out, "metrics.jsonl")), `"split":"train"`); n != 2 {
		t.Errorf("--force run has %d train rows, want 2 (its own only)", n)
	}

	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "thesis.tex"), []byte("x"), 0o644)
	for _, args := range [][]string{quickArgs(other, data, 1), append(quickArgs(other, data, 1), "--force")} {
		code, _, errs = run(t, "", args...)
		if code != ExitUsage || !strings.Contains(errs, "not empty") {
			t.Errorf("train into a non-empty folder: exit %d: %s", code, errs)
		}
	}
	if ents, _ := os.ReadDir(other); len(ents) != 1 {
		t.Errorf("refused run wrote into the folder: %v", ents)
	}
}

// Issue 7 item 2: --resume DIR reads and writes DIR, wherever the run was
// started and whatever the current directory.
func TestTrainResumeUsesItsDir(t *testing.T) {
	work := t.TempDir()
	data := quickData(t, 16)
	os.WriteFile(filepath.Join(work, "pairs.jsonl"), []byte(slurp(t, data)), 0o644)
	t.Chdir(work)
	mustTrain(t, "", quickArgs("run", "pairs.jsonl", 2)...) // relative paths
	orig := filepath.Join(work, "run")
	before := slurp(t, filepath.Join(orig, "metrics.jsonl"))
	adapter := slurp(t, filepath.Join(orig, "adapter.gguf"))

	// a copy, resumed from another directory
	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(cp, os.DirFS(orig)); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	mustTrain(t, "", "train", "--resume", cp, "--max-steps", "4", "--threads", "2")
	if slurp(t, filepath.Join(orig, "metrics.jsonl")) != before || slurp(t, filepath.Join(orig, "adapter.gguf")) != adapter {
		t.Error("resuming the copy changed the original run")
	}
	if n := strings.Count(slurp(t, filepath.Join(cp, "metrics.jsonl")), `"split":"train"`); n != 4 {
		t.Errorf("the resumed copy has %d train rows, want 4", n)
	}
	if ents, _ := os.ReadDir("."); len(ents) != 0 {
		t.Errorf("resume created %v in the current directory", ents)
	}
}

// Issue 7 item 3: resume refuses when the data or the model changed.
func TestTrainResumeRefusesChangedInputs(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model.gguf")
	os.WriteFile(model, []byte(slurp(t, tinyModel)), 0o644)
	data := quickData(t, 16)
	out := filepath.Join(dir, "run")
	args := quickArgs(out, data, 1)
	args[4] = model
	mustTrain(t, "", args...)

	ps, _, _ := pairs.Load(data, pairs.LoadOptions{})
	ps[0].Chosen, ps[0].Rejected = ps[0].Rejected, ps[0].Chosen
	pairs.Save(data, ps)
	code, _, errs := run(t, "", "train", "--resume", out, "--max-steps", "2", "--threads", "2")
	if code == 0 || !strings.Contains(errs, "--data") || !strings.Contains(errs, "changed") {
		t.Errorf("resume after the data changed: exit %d: %s", code, errs)
	}
	ps[0].Chosen, ps[0].Rejected = ps[0].Rejected, ps[0].Chosen
	pairs.Save(data, ps)

	// another model of the same shape
	if code, _, errs := run(t, "", "model", "init", "--out", filepath.Join(dir, "other.gguf"), "--seed", "2"); code != 0 {
		t.Fatal(errs)
	}
	os.Rename(filepath.Join(dir, "other.gguf"), model)
	code, _, errs = run(t, "", "train", "--resume", out, "--max-steps", "2", "--threads", "2")
	if code == 0 || !strings.Contains(errs, "--model") || !strings.Contains(errs, "changed") {
		t.Errorf("resume after the model changed: exit %d: %s", code, errs)
	}
	if n := strings.Count(slurp(t, filepath.Join(out, "metrics.jsonl")), `"split":"train"`); n != 1 {
		t.Errorf("a refused resume trained: %d train rows", n)
	}
}

// Issue 7 item 11: metrics rows are unique per (split, step) across
// resumes; --max-steps and --epochs apply on resume, other changes are
// refused; a fallback to an older checkpoint is announced.
func TestTrainResumeMetricsAndFlags(t *testing.T) {
	data := quickData(t, 16)
	out := filepath.Join(t.TempDir(), "run")
	mustTrain(t, "", quickArgs(out, data, 2)...)
	rows := uniqueRows(t, out)
	errs := mustTrain(t, "", "train", "--resume", out, "--threads", "2") // a finished run: nothing to add
	if n := uniqueRows(t, out); n != rows {
		t.Errorf("resuming a finished run: %d rows, was %d", n, rows)
	}
	if strings.Contains(errs, "tokens/s") || !strings.Contains(errs, "nothing left to train") { // issue 21: was "0 tokens/s"
		t.Errorf("resuming a finished run says: %s", errs)
	}
	errs = mustTrain(t, "", "train", "--resume", out, "--max-steps", "1", "--threads", "2") // issue 21: said nothing
	if !strings.Contains(errs, "at step 2, past --max-steps 1") {
		t.Errorf("--max-steps below the run's step: %s", errs)
	}

	code, _, errs := run(t, "", "train", "--resume", out, "--lr", "0.1")
	if code != ExitUsage || !strings.Contains(errs, "--lr") {
		t.Errorf("--lr with --resume: exit %d: %s", code, errs)
	}
	mustTrain(t, "", "train", "--resume", out, "--model", tinyModel, "--max-steps", "3", "--threads", "2") // same model: no change
	if n := strings.Count(slurp(t, filepath.Join(out, "metrics.jsonl")), `"split":"train"`); n != 3 {
		t.Errorf("--max-steps 3 on resume: %d train rows, want 3", n)
	}

	// corrupt the newest checkpoint (step 3): resume from step 2, and say so
	p := filepath.Join(out, "checkpoints", "step-00000003", "state.bin")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	errs = mustTrain(t, "", "train", "--resume", out, "--max-steps", "4", "--threads", "2")
	if !strings.Contains(errs, "step-00000002") || !strings.Contains(errs, "checksum") {
		t.Errorf("fallback to the older checkpoint not announced: %s", errs)
	}
	uniqueRows(t, out)
	if n := strings.Count(slurp(t, filepath.Join(out, "metrics.jsonl")), `"split":"train"`); n != 4 {
		t.Errorf("after the fallback: %d train rows, want 4", n)
	}
}

// Issue 7 item 12: a prompt longer than --max-length is cut from the left,
// as the help says, not fatal.
func TestTrainCutsLongPrompt(t *testing.T) {
	data := filepath.Join(t.TempDir(), "long.jsonl")
	os.WriteFile(data, []byte(`{"id":"ok","prompt":"hi","chosen":"yes please","rejected":"no thanks"}
{"id":"huge","prompt":"`+strings.Repeat("manga volume ", 200)+`","chosen":"yes","rejected":"no"}
`), 0o644)
	out := filepath.Join(t.TempDir(), "run")
	args := append(quickArgs(out, data, 1), "--max-length", "64")
	args[8] = "0" // --eval-split
	errs := mustTrain(t, "", args...)
	if !strings.Contains(errs, "--max-length cut 1 prompt") {
		t.Errorf("summary does not count the cut prompt: %s", errs)
	}
}

// Issue 7 item 17: every flag is checked before any work, with one line
// naming the flag and the value, and exit 2.
func TestTrainFlagValidation(t *testing.T) {
	data := quickData(t, 8)
	table := filepath.Join(t.TempDir(), "betas.json")
	os.WriteFile(table, []byte(`{"saftey": 0.2}`), 0o644)
	badTable := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(badTable, []byte(`{"safety": -1}`), 0o644)
	cases := []struct {
		flag, value string
		want        string // in the message besides the flag
	}{
		{"method", "reinforce", `"reinforce"`},
		{"epochs", "0", "0"},
		{"lr", "0", "0"},
		{"lr", "NaN", "NaN"},
		{"lr", "Inf", "+Inf"},
		{"schedule", "step", `"step"`},
		{"warmup-steps", "-1", "-1"},
		{"weight-decay", "-1", "-1"},
		{"weight-decay", "NaN", "NaN"},
		{"max-grad-norm", "-1", "-1"},
		{"grad-accum", "0", "0"},
		{"batch-tokens", "8", "8"},
		{"max-length", "4", "4"},
		{"max-length", "4000", "4000"},
		{"lora-rank", "0", "0"},
		{"lora-alpha", "0", "0"},
		{"lora-alpha", "-2", "-2"},
		{"lora-targets", "q,x", `"x"`},
		{"beta", "NaN", "NaN"},
		{"beta", "-0.1", "-0.1"},
		{"beta-table", table, `"saftey"`},
		{"beta-table", badTable, "-1"},
		{"label-smoothing", "0.5", "0.5"},
		{"label-smoothing", "NaN", "NaN"},
		{"rpo-alpha", "-1", "-1"},
		{"eval-split", "1", "1"},
		{"eval-split", "NaN", "NaN"},
		{"eval-every", "-1", "-1"},
		{"save-every", "-1", "-1"},
		{"patience", "-1", "-1"},
		{"max-steps", "-1", "-1"},
		{"threads", "-3", "-3"},
		{"threads", "100000", "100000"},
		{"recompute", "sometimes", `"sometimes"`},
		{"backward-weights", "q2_k", `"q2_k"`},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), "run")
		args := []string{"train", "--model", tinyModel, "--data", data, "--out", out, "--" + c.flag, c.value}
		code, stdout, errs := run(t, "", args...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != ExitUsage || !strings.Contains(lines[0], "--"+c.flag) || !strings.Contains(lines[0], c.want) || stdout != "" {
			t.Errorf("--%s %s: exit %d, stderr %q", c.flag, c.value, code, errs)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--%s %s: created %s", c.flag, c.value, out)
		}
	}
	// --patience needs held-out pairs
	code, _, errs := run(t, "", "train", "--model", tinyModel, "--data", data, "--out", t.TempDir(), "--eval-split", "0", "--patience", "2")
	if code != ExitUsage || !strings.Contains(errs, "--patience") {
		t.Errorf("--patience without held-out pairs: exit %d: %s", code, errs)
	}
}

// bench flags are checked the same way.
func TestBenchFlagValidation(t *testing.T) {
	for _, c := range [][]string{{"--method", "ipo"}, {"--seq", "4"}, {"--steps", "0"}, {"--threads", "-1"}, {"--lora-rank", "0"}, {"--lora-targets", "z"}} {
		code, _, errs := run(t, "", append([]string{"bench", "train", "--model", tinyModel}, c...)...)
		if code != ExitUsage || !strings.Contains(errs, c[0]) || !strings.Contains(errs, c[1]) {
			t.Errorf("bench %v: exit %d: %s", c, code, errs)
		}
	}
}

// Issue 7 item 23: a run that fails leaves no --out behind; nothing is
// created before the inputs are read.
func TestTrainFailureLeavesNoOut(t *testing.T) {
	dir := t.TempDir()
	notModel := filepath.Join(dir, "model.gguf")
	os.WriteFile(notModel, []byte("not a gguf"), 0o644)
	out := filepath.Join(dir, "run")
	args := quickArgs(out, quickData(t, 8), 1)
	args[4] = notModel
	if code, _, errs := run(t, "", args...); code != ExitError {
		t.Errorf("bad model: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed run left %s", out)
	}
}

// Issue 7 item 24: a run trained on standard input keeps its pairs and
// resumes.
func TestTrainStdinDataResumes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	mustTrain(t, slurp(t, quickData(t, 16)), quickArgs(out, "-", 1)...)
	if _, err := os.Stat(filepath.Join(out, "data.jsonl")); err != nil {
		t.Errorf("the run did not keep its standard-input pairs: %v", err)
	}
	mustTrain(t, "", "train", "--resume", out, "--max-steps", "2", "--threads", "2")
	if n := strings.Count(slurp(t, filepath.Join(out, "metrics.jsonl")), `"split":"train"`); n != 2 {
		t.Errorf("resumed stdin run: %d train rows, want 2", n)
	}
}

// Issue 7 items 16 and 25: progress lines fit the terminal and never say
// ETA 0s; texts count in the singular; every flag has a description.
func TestTrainTexts(t *testing.T) {
	for _, ev := range []train.Event{
		{Phase: "reference", Done: 3, Total: 40, ETA: 12 * time.Second},
		{Phase: "train", Done: 7, Total: 7, Stats: "loss 0.6931 margin 0.000 acc 0.00 lr 5.00e-04 1234 tok/s"},
		{Phase: "eval", Done: 1, Total: 9, ETA: 3 * time.Second},
		{Phase: "eval", Done: 1, Total: 2, ETA: 300 * time.Millisecond},
	} {
		for _, width := range []int{40, 60, 200} {
			line := progressLine(ev, width)
			if n := len([]rune(line)); n >= width {
				t.Errorf("width %d: %d columns: %q", width, n, line)
			}
			if strings.Contains(line, "ETA 0s") {
				t.Errorf("%q", line)
			}
		}
		if line := progressLine(ev, 200); !strings.Contains(line, phaseLabels[ev.Phase]) || !strings.Contains(line, "[") {
			t.Errorf("wide line lacks its label or bar: %q", line)
		}
	}
	out := filepath.Join(t.TempDir(), "run")
	args := quickArgs(out, quickData(t, 16), 1)
	args[len(args)-3] = "10" // --warmup-steps 10 of a 1-step run
	errs := mustTrain(t, "", args...)
	if !strings.Contains(errs, "align: 1 step,") || !strings.Contains(errs, "--warmup-steps 10") {
		t.Errorf("stderr: %s", errs)
	}
	for _, f := range trainCommand().Flags {
		if u := f.(interface{ GetUsage() string }).GetUsage(); u == "" {
			t.Errorf("train --%s has no description", f.Names()[0])
		}
	}
	if _, stdout, _ := run(t, "", "bench", "--help"); !strings.Contains(stdout, "Example:") {
		t.Errorf("align bench --help has no example:\n%s", stdout)
	}
	code, stdout, errs := run(t, "", "bench", "train", "--model", tinyModel, "--seq", "16", "--steps", "1", "--threads", "2", "--no-baseline", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errs)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"peak_gflops_f32", "mfu", "llama_pp_tokens_per_s", "train_over_pp"} {
		if _, ok := res[k]; ok {
			t.Errorf("bench --no-baseline --json reports unmeasured %s", k)
		}
	}
	if !(res["step_ms"].(float64) > 0) || !(res["reference_ms"].(float64) > 0) {
		t.Errorf("bench: %v", res)
	}
}

// Issue 7 item 11: --epochs given with --resume continues the run for the
// extra epochs, and config.json records it.
func TestTrainResumeMoreEpochs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	args := quickArgs(out, quickData(t, 16), 0) // --max-steps 0: all epochs
	mustTrain(t, "", args...)
	var one train.Result
	json.Unmarshal([]byte(slurp(t, filepath.Join(out, "summary.json"))), &one)
	mustTrain(t, "", "train", "--resume", out, "--epochs", "2", "--threads", "2")
	var two train.Result
	json.Unmarshal([]byte(slurp(t, filepath.Join(out, "summary.json"))), &two)
	if one.Epochs != 1 || two.Epochs != 2 || two.Steps <= one.Steps {
		t.Errorf("after --resume --epochs 2: %d epochs, %d steps; before %d epochs, %d steps", two.Epochs, two.Steps, one.Epochs, one.Steps)
	}
	if !strings.Contains(slurp(t, filepath.Join(out, "config.json")), `"Epochs": 2`) {
		t.Error("config.json does not record the new --epochs")
	}
	uniqueRows(t, out)
}
