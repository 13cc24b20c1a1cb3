package rl

import (
	"context"
	"path/filepath"
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
	if err := tr.ExportSet(0, p); err != nil {
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
