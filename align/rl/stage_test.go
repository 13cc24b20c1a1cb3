package rl

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/bindings"
)

// sftAdapter writes a LoRA adapter with B ≠ 0 (as an SFT run leaves one)
// for the q8_0 fixture: rank 4 on q, v, down.
func sftAdapter(t *testing.T, model string) string {
	t.Helper()
	tr, err := bindings.NewTrainerFromFile(model, bindings.TrainerOptions{Threads: 2, Rank: 4, Alpha: 8,
		Targets: bindings.TargetQ | bindings.TargetV | bindings.TargetDown, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	setRandom(t, tr, 0, 7, 0.05)
	p := filepath.Join(t.TempDir(), "sft.gguf")
	if err := tr.Set(0).Export(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// SFT → GRPO (DESIGN.md §1): --init-adapter starts the policy from the SFT
// adapter (its held-out KL to the plain base is not 0 before any step,
// where a policy from B = 0 has exactly 0), and --ref-adapter makes the
// SFT model the reference too (KL exactly 0 at step 0 again), with the
// adapter's rank, alpha and targets.
func TestGRPOStartsFromAdapter(t *testing.T) {
	model := fixture(t, "q8_0")
	sft := sftAdapter(t, model)
	kl0 := func(init, ref string) (float64, Config) {
		cfg := smallConfig(t, GRPO)
		cfg.Model = model
		cfg.MaxSteps, cfg.EvalSamples = 1, 1
		cfg.InitAdapter, cfg.RefAdapter = init, ref
		if init != "" || ref != "" {
			cfg.Rank, cfg.Alpha, cfg.Targets = 0, 0, nil // the adapter's
		}
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return res.Before["kl"], cfg
	}
	if kl, _ := kl0("", ""); kl != 0 {
		t.Fatalf("from B = 0: held-out KL at step 0 = %g, want exactly 0", kl)
	}
	kl, cfg := kl0(sft, "")
	if kl == 0 {
		t.Fatal("--init-adapter: held-out KL to the base at step 0 is 0: the policy did not start from the adapter")
	}
	var saved Config
	if err := readConfig(cfg.Out, &saved); err != nil {
		t.Fatal(err)
	}
	if saved.Rank != 4 || saved.Alpha != 8 || len(saved.Targets) != 3 || saved.Hashes["init_adapter"] == "" {
		t.Errorf("--init-adapter run: rank %d alpha %g targets %v hashes %v, want the adapter's shape and its hash",
			saved.Rank, saved.Alpha, saved.Targets, saved.Hashes)
	}
	if kl, _ := kl0("", sft); kl != 0 {
		t.Fatalf("--ref-adapter: held-out KL at step 0 = %g, want exactly 0 (policy == reference)", kl)
	}
}

// sharedModel is a real model of ../shared/models (as align/train's tests
// find it), or a skip.
func sharedModel(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("ALIGN_SHARED_MODELS")
	if dir == "" {
		wd, _ := os.Getwd()
		for d := wd; ; d = filepath.Dir(d) {
			if st, err := os.Stat(filepath.Join(d, "shared", "models")); err == nil && st.IsDir() {
				dir = filepath.Join(d, "shared", "models")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); dir == "" || err != nil {
		t.Skipf("real model %s not found (set ALIGN_SHARED_MODELS or put it in a shared/models folder above the repository)", name)
	}
	return p
}

// Issue 21 item 10: prompts with characters the vocabulary cannot spell
// (TinyStories has no byte fallback) are read as <unk>, with one warning
// for the run that names the file, the count and the first character.
func TestGRPOUnspellablePromptsWarnOnce(t *testing.T) {
	model := sharedModel(t, "TinyStories-656K-Q8_0.gguf")
	prompts := filepath.Join(t.TempDir(), "prompts.jsonl")
	os.WriteFile(prompts, []byte(`{"id":"a","prompt":"Tom had a {dog}."}
{"id":"b","prompt":"Once upon a time there was a cat."}
{"id":"c","prompt":"Sue saw a [bird]."}
{"id":"d","prompt":"The sun was hot."}
`), 0o644)
	cfg := Defaults(GRPO)
	cfg.Model, cfg.Prompts, cfg.Out, cfg.Raw = model, prompts, filepath.Join(t.TempDir(), "run"), true
	cfg.Scorer, cfg.Reward = &phrase{p: "z"}, "contains:z"
	cfg.MaxSteps, cfg.BatchPrompts, cfg.Group, cfg.MaxNewTokens, cfg.EvalSplit, cfg.Threads = 1, 2, 2, 4, 0, 2
	var notes []string
	cfg.Progress = func(ev Event) {
		if ev.Note != "" {
			notes = append(notes, ev.Note)
		}
	}
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	var warn []string
	for _, n := range notes {
		if strings.Contains(n, "cannot spell") {
			warn = append(warn, n)
		}
	}
	if len(warn) != 1 || !strings.Contains(warn[0], "prompts.jsonl") || !strings.Contains(warn[0], "2 prompt(s)") || !strings.Contains(warn[0], `"{"`) {
		t.Errorf("warnings %q; want one naming prompts.jsonl, 2 prompts and \"{\"", warn)
	}
}
