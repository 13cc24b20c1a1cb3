//go:build cgo

package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/align/backend/local"
	"github.com/align-dev/align/bindings"
)

// TestLocalEndToEnd: a tiny random-weight model generates (gibberish), the
// rules judge ranks, and the same model judges with the verdict grammar;
// every prompt is accounted for.
func TestLocalEndToEnd(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.gguf")
	if err := bindings.WriteFixture(model, bindings.FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	prompts := "../../testdata/prompts/sample.jsonl"
	o := OpenOptions{Local: local.Options{Threads: 2, MaxTokens: 16, StringLimit: 24}}
	gen := mustOpen(t, "local:"+model, o)
	cand := filepath.Join(dir, "cand.jsonl")
	crep, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: cand, Workers: 2}, Generator: gen, MaxTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	if crep.Written+crep.Dead != 6 || crep.Written == 0 {
		t.Fatalf("collect: %+v", crep)
	}
	for _, judgeSpec := range []string{"rules:../../testdata/catalog.json", "local:" + model} {
		judge := gen
		if judgeSpec != "local:"+model {
			judge = mustOpen(t, judgeSpec, o)
		}
		out := filepath.Join(dir, filepath.Base(judgeSpec[:5])+"-pairs.jsonl")
		rrep, err := Rank(context.Background(), RankConfig{Common: Common{In: cand, Out: out, Workers: 2}, Judge: judge})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", judgeSpec, rrep)
		if rrep.Pairs+rrep.Ties+rrep.Inconsistent+rrep.Dead != crep.Written || rrep.Verdicts == 0 {
			t.Errorf("%s: not every candidate accounted for: %+v", judgeSpec, rrep)
		}
	}
	if _, err := os.Stat(SidePath(cand, "ledger")); err != nil {
		t.Error(err)
	}
}
