package reward

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/train"
	"github.com/align-dev/align/bindings"
)

const (
	catalog   = "../../testdata/catalog.json"
	trainData = "../../testdata/pairs/train.jsonl"
	evalData  = "../../testdata/pairs/eval.jsonl"
)

var tinyModel, rmRun string

// TestMain writes the tiny model and trains a small reward model on it
// (two optimiser steps: enough for rewards that differ).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "align-reward-test-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		tinyModel = filepath.Join(dir, "tiny-q8_0.gguf")
		if err := bindings.WriteFixture(tinyModel, bindings.FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 1}); err != nil {
			panic(err)
		}
		ps, _, err := pairs.Load(trainData, pairs.LoadOptions{})
		if err != nil {
			panic(err)
		}
		data := filepath.Join(dir, "train.jsonl")
		if err := pairs.Save(data, ps[:16]); err != nil {
			panic(err)
		}
		cfg := train.DefaultConfig()
		rmRun = filepath.Join(dir, "rm")
		cfg.Method, cfg.Model, cfg.Data, cfg.Out, cfg.EvalSplit = train.RM, tinyModel, data, rmRun, 0
		cfg.Epochs, cfg.MaxSteps, cfg.BatchTokens, cfg.LR, cfg.Threads = 1, 2, 1024, 1e-2, 2
		if _, err := train.Run(context.Background(), cfg, nil); err != nil {
			panic(err)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func TestParseSpec(t *testing.T) {
	terms, err := ParseSpec("contains:Human Teammate=0.5, rules:x.json,openai:http://h:1/v1?a=b#m,rm:runs/rm=-2")
	if err != nil {
		t.Fatal(err)
	}
	want := []Term{{KindContains, "Human Teammate", 0.5}, {KindRules, "x.json", 1}, {KindOpenAI, "http://h:1/v1?a=b#m", 1}, {KindRM, "runs/rm", -2}}
	if len(terms) != len(want) {
		t.Fatalf("terms %+v", terms)
	}
	for i := range want {
		if terms[i] != want[i] {
			t.Errorf("term %d: %+v, want %+v", i, terms[i], want[i])
		}
	}
	if got := terms[0].String(); got != "contains:Human Teammate=0.5" {
		t.Errorf("String %q", got)
	}
	// a bare run directory is an rm: term
	if terms, err := ParseSpec(rmRun + "=3"); err != nil || terms[0] != (Term{KindRM, rmRun, 3}) {
		t.Errorf("bare run directory: %+v, %v", terms, err)
	}
}

// Bad specs: one error naming the term.
func TestParseErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ spec, want string }{
		{"", "empty reward spec"},
		{"  ", "empty reward spec"},
		{"judge:x", `term 1 "judge:x": want KIND:TARGET[=WEIGHT] with KIND one of rm, rules, local, openai, bedrock, contains`},
		{"contains:a,,rules:" + catalog, `term 2 "": empty term`},
		{"rules:", `term 1 "rules:": rules: has no target`},
		{"contains:a=0", `term 1 "contains:a=0": weight 0: want a finite number other than 0`},
		{"contains:a=NaN", "weight NaN"},
		{"no/such/dir", `term 1 "no/such/dir": want KIND:TARGET`},
		{"contains:yes,rules:no/such/catalog.json", "reward term rules:no/such/catalog.json: rules:"},
		{"rm:no/such/run", "reward term rm:no/such/run: no/such/run: not a reward-model run (no config.json"},
		{"contains:sorry=1e400", `term 1 "contains:sorry=1e400": weight 1e400: out of range`},
	} {
		s, err := Parse(ctx, c.spec, Options{})
		if err == nil {
			s.Close()
			t.Errorf("%q: no error", c.spec)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), "\n") > 0 || strings.Contains(err.Error(), "resume") {
			t.Errorf("%q: error %q, want one line containing %q", c.spec, err, c.want)
		}
	}
}

func samplesOf(t *testing.T, path string, n int) (chosen, rejected []Sample) {
	t.Helper()
	ps, _, err := pairs.Load(path, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps[:min(n, len(ps))] {
		pm, cm, rm := p.Messages()
		chosen = append(chosen, Sample{ID: p.ID, Prompt: pm, Response: cm[0].Content})
		rejected = append(rejected, Sample{ID: p.ID, Prompt: pm, Response: rm[0].Content})
	}
	return chosen, rejected
}

func score(t *testing.T, spec string, o Options, samples []Sample) []float64 {
	t.Helper()
	s, err := Parse(context.Background(), spec, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Score(context.Background(), samples)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(samples) {
		t.Fatalf("%d rewards for %d samples", len(out), len(samples))
	}
	return out
}

func TestContains(t *testing.T) {
	ss := []Sample{{Response: "I can connect you with a HUMAN teammate."}, {Response: "Try again later."}, {Response: ""}}
	got := score(t, "contains:human teammate", Options{}, ss)
	if got[0] != 1 || got[1] != 0 || got[2] != 0 {
		t.Errorf("contains: %v, want [1 0 0]", got)
	}
	got = score(t, "contains:human teammate=2,contains:again=-1", Options{}, ss)
	if got[0] != 2 || got[1] != -1 || got[2] != 0 {
		t.Errorf("weighted sum: %v, want [2 -1 0]", got)
	}
}

// The rules reward: the mean criterion score, 1 to 5; the shipped pairs
// (made from the same rules) rank chosen above rejected.
func TestRules(t *testing.T) {
	chosen, rejected := samplesOf(t, evalData, 60)
	spec := "rules:" + catalog
	wc, wr := score(t, spec, Options{}, chosen), score(t, spec, Options{}, rejected)
	better := 0
	for i := range wc {
		for _, v := range []float64{wc[i], wr[i]} {
			if !(v >= 1 && v <= 5) || math.Round(v*4) != v*4 {
				t.Fatalf("pair %s: reward %g, want a mean of four scores in [1, 5]", chosen[i].ID, v)
			}
		}
		if wc[i] > wr[i] {
			better++
		}
	}
	t.Logf("rules reward: chosen above rejected in %d of %d held-out pairs", better, len(wc))
	if better < len(wc)*9/10 {
		t.Errorf("chosen above rejected in %d of %d pairs", better, len(wc))
	}
	// nothing any rule looks at: 3 on every criterion
	if got := score(t, spec, Options{}, []Sample{{Prompt: []Message{{Role: "user", Content: "hello"}}, Response: "Hello."}}); got[0] != 3 {
		t.Errorf("a neutral reply: %g, want 3", got[0])
	}
	// a fact against the catalog lowers accuracy
	ss := []Sample{
		{Prompt: []Message{{Role: "user", Content: "How many volumes does Akira have?"}}, Response: "Our catalog lists 6 volumes of Akira."},
		{Prompt: []Message{{Role: "user", Content: "How many volumes does Akira have?"}}, Response: "Our catalog lists 60 volumes of Akira."},
	}
	if got := score(t, spec, Options{}, ss); !(got[0] > got[1]) {
		t.Errorf("right volume count %g, wrong %g: want the right one higher", got[0], got[1])
	}
}

// rm: from its own trainer, from a shared trainer (one more set), as a
// bare directory and weighted: the same rewards.
func TestRM(t *testing.T) {
	chosen, rejected := samplesOf(t, evalData, 6)
	samples := append(chosen, rejected...)
	own := score(t, "rm:"+rmRun, Options{ModelPath: tinyModel, Threads: 2}, samples)
	def := score(t, rmRun, Options{Threads: 2}, samples) // the run's own model
	tr, err := bindings.NewTrainerFromFile(tinyModel, bindings.TrainerOptions{Threads: 2, Rank: 4, Alpha: 8, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before := tr.Info().NSets
	shared := score(t, "rm:"+rmRun+"=2,contains:zzz", Options{Trainer: tr}, samples)
	if tr.Info().NSets != before+1 {
		t.Errorf("shared trainer: %d sets, want %d", tr.Info().NSets, before+1)
	}
	distinct := map[float64]bool{}
	for i := range own {
		if own[i] != def[i] || shared[i] != 2*own[i] {
			t.Errorf("sample %d: own trainer %g, run's model %g, shared ×2 %g", i, own[i], def[i], shared[i])
		}
		distinct[own[i]] = true
	}
	if len(distinct) < 2 {
		t.Errorf("rewards %v do not tell responses apart", own)
	}
	s, err := Parse(context.Background(), "rm:"+rmRun+"=2,contains:zzz", Options{Trainer: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := strings.Join(s.Terms(), " "); got != "rm:"+rmRun+"=2 contains:zzz=1" {
		t.Errorf("Terms %q", got)
	}
	if _, err := s.Score(context.Background(), nil); err != nil {
		t.Errorf("no samples: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if _, err := s.Score(context.Background(), samples); err == nil {
		t.Error("a closed scorer scored")
	}
}

// rm: refuses a base other than the one it was trained on, naming the term.
func TestRMOtherModel(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other.gguf")
	if err := bindings.WriteFixture(other, bindings.FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 2}); err != nil {
		t.Fatal(err)
	}
	_, err := Parse(context.Background(), "contains:x,rm:"+rmRun, Options{ModelPath: other})
	if err == nil || !strings.Contains(err.Error(), "reward term rm:"+rmRun+": ") || !strings.Contains(err.Error(), "the reward model was trained on") {
		t.Errorf("other base: %v", err)
	}
}

// ParseSpec never panics, and a parsed spec printed term by term parses
// back to the same terms.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"rm:runs/rm", "contains:sorry=0.5,rules:x.json", "openai:http://h/v1?a=b#m=2", "a=1=2", ",", "rules:=", "contains:x=1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		terms, err := ParseSpec(spec)
		if err != nil {
			return
		}
		var parts []string
		for _, term := range terms {
			parts = append(parts, term.String())
		}
		again, err := ParseSpec(strings.Join(parts, ","))
		if err != nil {
			t.Fatalf("%q → %q: %v", spec, parts, err)
		}
		for i := range terms {
			if again[i] != terms[i] {
				t.Fatalf("%q: term %d %+v printed as %q parses to %+v", spec, i, terms[i], parts[i], again[i])
			}
		}
	})
}

// A reward-model run whose base moved: without --model the error says to
// pass it (the run's files are copied elsewhere, its config names a model
// that is gone).
func TestRMMovedBase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rm")
	os.Mkdir(dir, 0o755)
	for _, f := range []string{"adapter.gguf", "head.gguf"} {
		b, _ := os.ReadFile(filepath.Join(rmRun, f))
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(rmRun, "config.json"))
	json.Unmarshal(b, &cfg)
	gone := filepath.Join(t.TempDir(), "moved.gguf")
	cfg["Model"] = gone
	b, _ = json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	_, err := Parse(context.Background(), "rm:"+dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "was trained on "+gone+", which cannot be read") || !strings.Contains(err.Error(), "--model") {
		t.Errorf("moved base: %v", err)
	}
	if got := Files("rm:" + dir); len(got) != 4 || got[3] != gone {
		t.Errorf("Files: %v", got)
	}
	// with the model given, the run is scored
	if s, err := Parse(context.Background(), "rm:"+dir, Options{ModelPath: tinyModel}); err != nil {
		t.Errorf("moved base with --model: %v", err)
	} else {
		s.Close()
	}
}
