package eval

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

// TestFormatTableGolden pins the printed table of the hand-computed case
// of TestSummarizeHandComputed (run with -update after a deliberate change).
func TestFormatTableGolden(t *testing.T) {
	tone := []string{"off_brand_tone"}
	rs := []Response{
		{Variant: "base", PromptIndex: 0, Sample: 0, Issues: tone, Tokens: 4, LogpBase: -8, Generated: 4},
		{Variant: "base", PromptIndex: 0, Sample: 1, Issues: tone, Tokens: 4, LogpBase: -8, Generated: 4},
		{Variant: "base", PromptIndex: 1, Sample: 0, Issues: tone, Tokens: 2, LogpBase: -2, Generated: 2},
		{Variant: "base", PromptIndex: 1, Sample: 1, Issues: []string{"hallucination"}, Tokens: 2, LogpBase: -2, Generated: 2},
		{Variant: "a", PromptIndex: 0, Sample: 0, Tokens: 5, LogpBase: -15, KLBase: 1, Generated: 5},
		{Variant: "a", PromptIndex: 0, Sample: 1, Tokens: 5, LogpBase: -15, KLBase: 1, Generated: 5},
		{Variant: "a", PromptIndex: 1, Sample: 0, Issues: tone, Tokens: 5, LogpBase: -15, KLBase: 2, Generated: 5},
		{Variant: "a", PromptIndex: 1, Sample: 1, Tokens: 5, LogpBase: -15, KLBase: 1, Generated: 5},
	}
	cs := []Comparison{{Variant: "a", Outcome: Win}, {Variant: "a", Outcome: Win}, {Variant: "a", Outcome: Tie}, {Variant: "a", Outcome: Inconsistent}}
	vs := Summarize(DefaultCategories, []Variant{{Name: "base"}, {Name: "a"}}, rs, cs, 1000, 1)
	o, per := Preference([]PairScore{{Objective: "tone", Beta: 0.1, PiW: -10, RefW: -12, PiL: -20, RefL: -19}})
	vs[1].Preference = &PrefSet{Overall: o, PerObjective: per}
	// the change of the mean token log-prob is the difference of the two
	// token-weighted levels beside it (one estimator), not a mean of
	// per-prompt means: -3 - (-20/12), not -3 - (-1.5)
	if d, want := vs[1].FluencyChange.Delta, vs[1].MeanLogpBase-vs[0].MeanLogpBase; math.Abs(d-want) > 1e-12 {
		t.Errorf("fluency change %g, want the difference of the levels %g", d, want)
	}
	got := FormatTable(DefaultCategories, vs)
	path := filepath.Join("testdata", "table.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if got != string(want) {
		t.Errorf("table differs from %s:\n%s\nwant:\n%s", path, got, want)
	}
}
