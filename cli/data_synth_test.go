package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
)

// data synth --kind sft writes the SFT stage's examples as pairs files that
// align train reads (every record valid, source "sft"); an unknown kind is
// a usage error naming the flag before anything is written.
func TestSynthSFTKind(t *testing.T) {
	dir := t.TempDir()
	tr, ev := filepath.Join(dir, "t.jsonl"), filepath.Join(dir, "e.jsonl")
	code, _, errs := run(t, "", "data", "synth", "--kind", "sft", "--n", "70", "--out-train", tr, "--out-eval", ev)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	total := 0
	for _, f := range []string{tr, ev} {
		ps, _, err := pairs.Load(f, pairs.LoadOptions{Objectives: []string{"tone", "accuracy", "escalation", "safety"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Source != "sft" {
				t.Fatalf("%s: source %q", p.ID, p.Source)
			}
		}
		total += len(ps)
	}
	if total != 70 {
		t.Errorf("%d examples, want 70", total)
	}
	bad := filepath.Join(dir, "b")
	code, _, errs = run(t, "", "data", "synth", "--kind", "dpo", "--out-train", bad+"1", "--out-eval", bad+"2")
	if first := strings.SplitN(errs, "\n", 2)[0]; code != ExitUsage || !strings.Contains(first, `--kind "dpo"`) {
		t.Errorf("exit %d, want %d naming --kind: %q", code, ExitUsage, errs)
	}
	for _, f := range []string{bad + "1", bad + "2"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("a usage error wrote %s", f)
		}
	}
}
