package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/rules"
	"github.com/align-dev/align/align/dirlock"
	"github.com/align-dev/align/align/manga"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
)

// fakeEngine answers formally for the base and cheerfully for the adapter
// on most seeds, and counts calls so a test can make it fail midway.
type fakeEngine struct {
	calls, failAt int
}

func (f *fakeEngine) Generate(ctx context.Context, req GenRequest) (GenResult, error) {
	f.calls++
	if f.failAt > 0 && f.calls == f.failAt {
		return GenResult{}, errors.New("killed")
	}
	text := "Your inquiry has been noted. Please be advised that we will respond."
	if req.Adapter >= 0 && req.Seed%3 != 0 {
		text = fmt.Sprintf("Happy to help! Great question, let me check that for you (%d).", req.Seed)
	}
	if strings.Contains(req.Prompt, "ridiculous") && req.Adapter >= 0 {
		text += " I can connect you with a human teammate right away."
	}
	return GenResult{Text: text, Generated: len(strings.Fields(text)), StopReason: "max_tokens"}, nil
}

func (f *fakeEngine) Score(ctx context.Context, adapter int, system, prompt, response string) (Fluency, error) {
	n := len(strings.Fields(response))
	fl := Fluency{Tokens: n, Logp: -2 * float64(n)}
	if adapter >= 0 {
		fl.KL = 0.25 * float64(n)
	}
	return fl, nil
}

func (f *fakeEngine) PairScores(ctx context.Context, adapter int, ps []pairs.Pair, betas func(string) float64) ([]PairScore, error) {
	var out []PairScore
	for _, p := range ps {
		s := PairScore{Objective: p.Objective, Beta: betas(p.Objective), PiW: -10, PiL: -10, RefW: -10, RefL: -10}
		if adapter >= 0 {
			s.PiW = -8
		}
		out = append(out, s)
	}
	return out, nil
}

func testConfig(t *testing.T, dir string, g *fakeEngine) Config {
	t.Helper()
	return Config{
		Model: "fake.gguf", ModelDigest: "fake", Adapters: []Adapter{{Path: writeFile(t, "good.gguf", "adapter"), Scale: 1}},
		Prompts: "../../testdata/prompts/sample.jsonl", Pairs: "../../testdata/pairs/eval.jsonl",
		Judge: &pipeline.Backend{Model: "rules", Judge: rules.New(manga.DefaultCatalog(), "rules")},
		Out:   dir, Samples: 3, Seed: 1, Sampler: Sampler{Temperature: 0.8, TopP: 0.95, TopK: 40, MinP: 0.05, MaxTokens: 32},
		BootIters: 200, Generator: g, Scorer: g,
	}
}

func writeFile(t *testing.T, name, content string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunRulesJudgeAndResume(t *testing.T) {
	ctx := context.Background()
	full := t.TempDir()
	cfg := testConfig(t, full, &fakeEngine{})
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(ResultPath(full))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Variants) != 2 || res.NPrompts != 6 {
		t.Fatalf("%d variants, %d prompts", len(res.Variants), res.NPrompts)
	}
	base, ad := res.Variants[0], res.Variants[1]
	// every base response is formal: off-brand 18/18
	if got := base.Categories["off_brand_tone"]; got.K != 18 || got.N != 18 {
		t.Errorf("base off-brand %d/%d, want 18/18", got.K, got.N)
	}
	// adapter: seeds 1..18, those divisible by 3 (6 of them) stay formal
	if got := ad.Categories["off_brand_tone"]; got.K != 6 || got.N != 18 {
		t.Errorf("adapter off-brand %d/%d, want 6/18", got.K, got.N)
	}
	if ch := ad.Categories["off_brand_tone"].Change; ch == nil || !near(ch.Delta, -12.0/18, 1e-12) || ch.CIHigh >= 0 {
		t.Errorf("tone change %+v, want −0.667 with an interval below 0", ch)
	}
	// the base never offers a human on the frustrated prompt (3 samples)
	if got := base.Categories["missed_escalation"]; got.K != 3 {
		t.Errorf("base missed escalation %d, want 3", got.K)
	}
	if got := ad.Categories["missed_escalation"]; got.K != 0 {
		t.Errorf("adapter missed escalation %d, want 0", got.K)
	}
	if ad.WinRate == nil || ad.Wins.N != 18 || ad.Wins.Wins < 12 || ad.Wins.Inconsistent != 0 {
		t.Errorf("win rate %+v", ad.Wins)
	}
	if base.MeanLogpBase != -2 || ad.KLToBase != 0.25 || base.KLToBase != 0 {
		t.Errorf("fluency %g, kl %g / %g", base.MeanLogpBase, ad.KLToBase, base.KLToBase)
	}
	if ad.Preference == nil || ad.Preference.Overall.Accuracy != 1 || base.Preference.Overall.Accuracy != 0 {
		t.Errorf("preference base %+v adapter %+v", base.Preference, ad.Preference)
	}
	if _, ok := ad.Preference.PerObjective["tone"]; !ok {
		t.Errorf("no per-objective tone metrics: %+v", ad.Preference.PerObjective)
	}

	// killed partway (the 25th generation fails), with a torn last line,
	// then rerun: the same eval.json
	part := t.TempDir()
	g := &fakeEngine{failAt: 25}
	if _, err := Run(ctx, testConfig(t, part, g)); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("interrupted run: %v", err)
	}
	f, _ := os.OpenFile(ResponsesPath(part), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"torn","vari`)
	f.Close()
	g2 := &fakeEngine{}
	cfg2 := testConfig(t, part, g2)
	cfg2.Adapters = cfg.Adapters
	if _, err := Run(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	if g2.calls != 36-24 {
		t.Errorf("rerun generated %d responses, want the 12 missing", g2.calls)
	}
	cfg.Out = part
	got, _ := os.ReadFile(ResultPath(part))
	if !bytes.Equal(got, want) {
		t.Errorf("resumed eval.json differs from an uninterrupted run:\n%s\nvs\n%s", got, want)
	}
	// a rerun of a finished evaluation generates nothing and changes nothing
	g3 := &fakeEngine{}
	cfg3 := testConfig(t, part, g3)
	cfg3.Adapters = cfg.Adapters
	if _, err := Run(ctx, cfg3); err != nil || g3.calls != 0 {
		t.Fatalf("rerun: %v, %d calls", err, g3.calls)
	}
	if again, _ := os.ReadFile(ResultPath(part)); !bytes.Equal(again, want) {
		t.Error("finished rerun changed eval.json")
	}
	var doc map[string]any
	if err := json.Unmarshal(want, &doc); err != nil {
		t.Fatal(err)
	}
	v := doc["variants"].([]any)[1].(map[string]any)
	for _, k := range []string{"combined_issue_rate", "win_rate", "mean_logp_base", "kl_to_base"} {
		if _, ok := v[k].(float64); !ok {
			t.Errorf("eval.json variant lacks number %q", k)
		}
	}
	cat := v["categories"].(map[string]any)["hallucination"].(map[string]any)
	for _, k := range []string{"rate", "ci_low", "ci_high"} {
		if _, ok := cat[k].(float64); !ok {
			t.Errorf("eval.json category lacks number %q", k)
		}
	}
}

func TestRunBadPromptNamesLine(t *testing.T) {
	p := writeFile(t, "prompts.jsonl", "{\"prompt\":\"hi\"}\n{\"prompt\":\"\"}\n")
	cfg := testConfig(t, t.TempDir(), &fakeEngine{})
	cfg.Prompts = p
	_, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "prompts.jsonl:2:") {
		t.Fatalf("err %v, want one naming prompts.jsonl:2", err)
	}
}

func TestKL(t *testing.T) {
	if kl := KL([]float32{1, 2, 3}, []float32{1, 2, 3}); kl != 0 {
		t.Errorf("KL of equal rows %g", kl)
	}
	// p = softmax(0, ln 3) = (1/4, 3/4), q = (1/2, 1/2):
	// KL = 1/4 ln(1/2) + 3/4 ln(3/2)
	want := 0.25*math.Log(0.5) + 0.75*math.Log(1.5)
	if kl := KL([]float32{0, float32(math.Log(3))}, []float32{5, 5}); !near(kl, want, 1e-6) {
		t.Errorf("KL %g, want %g", kl, want)
	}
}

// harshJudge scores every response's tone 1 and calls every comparison a
// tie: a second opinion that disagrees with the rules judge.
type harshJudge struct{}

func (harshJudge) Judge(ctx context.Context, req backend.JudgeRequest) (backend.JudgeResponse, error) {
	s := backend.Scores{Tone: 1, Accuracy: 3, Helpfulness: 3, Safety: 3}
	return backend.JudgeResponse{Verdict: backend.Verdict{Winner: backend.WinnerTie, Scores: backend.VerdictScores{A: s, B: s}}}, nil
}

func TestRunFurtherJudges(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), &fakeEngine{})
	cfg.MoreJudges = []*pipeline.Backend{{Model: "harsh", Judge: harshJudge{}}}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// the primary judge's table is the rules judge's, as without the second
	if got := res.Variants[1].Categories["off_brand_tone"]; got.K != 6 || got.N != 18 {
		t.Errorf("primary adapter off-brand %d/%d, want 6/18", got.K, got.N)
	}
	if len(res.OtherJudges) != 1 || res.OtherJudges[0].Judge != "harsh" {
		t.Fatalf("other judges %+v", res.OtherJudges)
	}
	h := res.OtherJudges[0].Variants
	for _, v := range h {
		if got := v.Categories["off_brand_tone"]; got.K != 18 || got.N != 18 {
			t.Errorf("harsh judge, %s off-brand %d/%d, want 18/18", v.Name, got.K, got.N)
		}
		if got := v.Categories["hallucination"]; got.K != 0 {
			t.Errorf("harsh judge, %s hallucination %d, want 0", v.Name, got.K)
		}
	}
	if w := h[1].Wins; w == nil || w.Ties != 18 || w.WinRate != 0 {
		t.Errorf("harsh judge win rate %+v, want 18 ties", w)
	}
	if h[1].KLToBase != res.Variants[1].KLToBase || h[1].Preference == nil {
		t.Errorf("judge-independent numbers differ between judges")
	}
}

// Two evals into one directory: the second stops at once with a clear
// error, before it generates, judges or writes anything.
func TestRunLocksOut(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "ev")
	os.MkdirAll(out, 0o755)
	held, err := dirlock.Acquire(out, "align eval")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeEngine{}
	cfg := testConfig(t, dir, g)
	cfg.Out = out
	_, err = Run(context.Background(), cfg)
	if !dirlock.IsHeld(err) || !strings.Contains(err.Error(), "is in use by another align eval") {
		t.Fatalf("while another eval holds %s: %v", out, err)
	}
	if g.calls != 0 {
		t.Errorf("%d generations while locked out", g.calls)
	}
	if _, err := os.Stat(ResponsesPath(out)); err == nil {
		t.Error("responses.jsonl written while locked out")
	}
	held.Unlock()
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Errorf("after the other eval ended: %v", err)
	}
}
