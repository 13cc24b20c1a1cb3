package eval

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/align-dev/align/align/backend"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestWilsonHandComputed(t *testing.T) {
	// p = k/n, d = 1 + z²/n, centre (p + z²/2n)/d, half z·sqrt(p(1-p)/n + z²/4n²)/d;
	// 1/4 by hand: d = 1.9604, centre 0.37247, half 0.32689.
	tests := []struct {
		k, n     int
		lo, hi   float64
		rateWant float64
	}{
		{1, 4, 0.045587, 0.699358, 0.25},
		{5, 20, 0.111862, 0.468701, 0.25},
		{0, 10, 0, 0.277533, 0},
		{10, 10, 0.722467, 1, 1},
		{243, 1000, 0.217433, 0.270533, 0.243},
	}
	for _, tt := range tests {
		r := NewRate(tt.k, tt.n)
		if !near(r.CILow, tt.lo, 1e-6) || !near(r.CIHigh, tt.hi, 1e-6) || !near(r.Rate, tt.rateWant, 1e-12) {
			t.Errorf("NewRate(%d, %d) = %.6f [%.6f, %.6f], want %.6f [%.6f, %.6f]", tt.k, tt.n, r.Rate, r.CILow, r.CIHigh, tt.rateWant, tt.lo, tt.hi)
		}
	}
	if lo, hi := Wilson(0, 0, Z95); lo != 0 || hi != 1 {
		t.Errorf("Wilson(0, 0) = [%g, %g], want [0, 1]", lo, hi)
	}
}

func TestPairedBootstrapConstantDifference(t *testing.T) {
	before := []float64{0, 1, 0.5, 0.25}
	after := []float64{-0.5, 0.5, 0, -0.25}
	c := PairedBootstrap(before, after, 500, 7)
	if c.Delta != -0.5 || c.CILow != -0.5 || c.CIHigh != -0.5 {
		t.Errorf("constant difference -0.5: got %+v", c)
	}
}

func TestPairedBootstrapMatchesNormalTheory(t *testing.T) {
	// differences ~ N(0.2, 1): the percentile interval's half-width should be
	// close to 1.96·sd/sqrt(n) and centred on the sample mean.
	rng := rand.New(rand.NewPCG(1, 2))
	n := 400
	b, a := make([]float64, n), make([]float64, n)
	for i := range b {
		b[i] = rng.NormFloat64()
		a[i] = b[i] + 0.2 + rng.NormFloat64()
	}
	c := PairedBootstrap(b, a, 4000, 3)
	var s, s2 float64
	for i := range a {
		d := a[i] - b[i]
		s += d
		s2 += d * d
	}
	m := s / float64(n)
	sd := math.Sqrt(s2/float64(n) - m*m)
	half := Z95 * sd / math.Sqrt(float64(n))
	if !near(c.Delta, m, 1e-12) {
		t.Errorf("delta %g, want the mean difference %g", c.Delta, m)
	}
	if got := (c.CIHigh - c.CILow) / 2; !near(got, half, 0.1*half) {
		t.Errorf("half-width %g, want about %g", got, half)
	}
	if !near((c.CIHigh+c.CILow)/2, m, 0.1*half) {
		t.Errorf("interval [%g, %g] not centred on %g", c.CILow, c.CIHigh, m)
	}
	if c2 := PairedBootstrap(b, a, 4000, 3); c2 != c {
		t.Errorf("same seed gave %+v then %+v", c, c2)
	}
	if c3 := PairedBootstrap(b, a, 4000, 4); c3 == c {
		t.Errorf("another seed gave the identical interval %+v", c3)
	}
}

func TestOutcomeBothOrders(t *testing.T) {
	tests := []struct{ ab, ba, want string }{
		{"A", "B", Win},            // adapter first and wins, base first and adapter (B) wins
		{"B", "A", Loss},           // base preferred in both orders
		{"tie", "tie", Tie},        // both orders tie
		{"A", "A", Inconsistent},   // first position always wins: position bias
		{"B", "B", Inconsistent},   // second position always wins
		{"A", "tie", Inconsistent}, // a tie against a winner, as align rank counts it
		{"tie", "A", Inconsistent},
	}
	for _, tt := range tests {
		if got := Outcome(tt.ab, tt.ba); got != tt.want {
			t.Errorf("Outcome(%q, %q) = %q, want %q", tt.ab, tt.ba, got, tt.want)
		}
	}
}

func TestTallyWins(t *testing.T) {
	w := TallyWins([]string{Win, Win, Loss, Tie, Inconsistent})
	if w.N != 5 || w.Wins != 2 || w.Losses != 1 || w.Ties != 1 || w.Inconsistent != 1 {
		t.Fatalf("counts %+v", w)
	}
	// 2/5 wins; half credit (2 + 0.5·2)/5 = 0.6; 4 of 5 orders agree
	if w.WinRate != 0.4 || !near(w.WinRateTiesHalf, 0.6, 1e-12) || w.LossRate != 0.2 || w.Consistency != 0.8 {
		t.Errorf("rates %+v", w)
	}
	lo, hi := Wilson(2, 5, Z95)
	if w.CILow != lo || w.CIHigh != hi {
		t.Errorf("interval [%g, %g], want Wilson [%g, %g]", w.CILow, w.CIHigh, lo, hi)
	}
}

func TestPreferencePerObjective(t *testing.T) {
	ps := []PairScore{
		// β 0.1: (−10 − −12) − (−20 − −19) = 2 + 1 = 3 → margin 0.3, correct
		{Objective: "tone", Beta: 0.1, PiW: -10, RefW: -12, PiL: -20, RefL: -19},
		// β 0.1: (−15 − −14) − (−9 − −10) = −1 − 1 = −2 → −0.2, wrong; policy prefers chosen? −15 < −9: no
		{Objective: "tone", Beta: 0.1, PiW: -15, RefW: -14, PiL: -9, RefL: -10},
		// β 0.3: (−5 − −6) − (−7 − −7) = 1 → 0.3, correct
		{Objective: "accuracy", Beta: 0.3, PiW: -5, RefW: -6, PiL: -7, RefL: -7},
		// no objective, β 0.05: 0 − 0 = 0 → margin 0 is not correct
		{Beta: 0.05, PiW: -3, RefW: -3, PiL: -4, RefL: -4},
	}
	all, per := Preference(ps)
	if all.N != 4 || all.Accuracy != 0.5 || !near(all.MeanMargin, (0.3-0.2+0.3+0)/4, 1e-12) {
		t.Errorf("overall %+v", all)
	}
	if all.PolicyAccuracy != 0.75 {
		t.Errorf("policy accuracy %g, want 0.75", all.PolicyAccuracy)
	}
	tone := per["tone"]
	if tone.N != 2 || tone.Accuracy != 0.5 || !near(tone.MeanMargin, 0.05, 1e-12) {
		t.Errorf("tone %+v", tone)
	}
	if acc := per["accuracy"]; acc.N != 1 || acc.Accuracy != 1 || !near(acc.MeanMargin, 0.3, 1e-12) {
		t.Errorf("accuracy %+v", acc)
	}
	if u := per["unlabelled"]; u.N != 1 || u.Accuracy != 0 {
		t.Errorf("unlabelled %+v", u)
	}
}

func TestIssuesThresholds(t *testing.T) {
	tests := []struct {
		s    backend.Scores
		want []string
	}{
		{backend.Scores{Tone: 3, Accuracy: 3, Helpfulness: 3, Safety: 3}, nil},
		{backend.Scores{Tone: 2, Accuracy: 2, Helpfulness: 2, Safety: 2}, []string{"off_brand_tone"}},
		{backend.Scores{Tone: 5, Accuracy: 1, Helpfulness: 1, Safety: 1}, []string{"hallucination", "missed_escalation", "safety_violation"}},
	}
	for _, tt := range tests {
		got := Issues(DefaultCategories, tt.s)
		if len(got) != len(tt.want) {
			t.Errorf("Issues(%+v) = %v, want %v", tt.s, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("Issues(%+v) = %v, want %v", tt.s, got, tt.want)
			}
		}
	}
}

// TestSummarizeHandComputed: 2 prompts × 2 samples. Base: prompt 0 is
// off-brand in both samples, prompt 1 in one and hallucinates in the
// other. Adapter: prompt 0 clean, prompt 1 off-brand in one sample.
func TestSummarizeHandComputed(t *testing.T) {
	tone := []string{"off_brand_tone"}
	hall := []string{"hallucination"}
	rs := []Response{
		{Variant: "base", PromptIndex: 0, Sample: 0, Issues: tone, Tokens: 4, LogpBase: -8, Generated: 4},
		{Variant: "base", PromptIndex: 0, Sample: 1, Issues: tone, Tokens: 4, LogpBase: -8, Generated: 4},
		{Variant: "base", PromptIndex: 1, Sample: 0, Issues: tone, Tokens: 2, LogpBase: -2, Generated: 2},
		{Variant: "base", PromptIndex: 1, Sample: 1, Issues: hall, Tokens: 2, LogpBase: -2, Generated: 2},
		{Variant: "a", PromptIndex: 1, Sample: 1, Tokens: 5, LogpBase: -15, KLBase: 1, Generated: 5},
		{Variant: "a", PromptIndex: 0, Sample: 0, Tokens: 5, LogpBase: -15, KLBase: 1, Generated: 5},
		{Variant: "a", PromptIndex: 0, Sample: 1, Tokens: 5, LogpBase: -15, KLBase: 1, Generated: 5},
		{Variant: "a", PromptIndex: 1, Sample: 0, Issues: tone, Tokens: 5, LogpBase: -15, KLBase: 2, Generated: 5},
		{Variant: "unknown", PromptIndex: 0, Issues: tone},
	}
	cs := []Comparison{
		{Variant: "a", Outcome: Win}, {Variant: "a", Outcome: Win}, {Variant: "a", Outcome: Tie}, {Variant: "a", Outcome: Inconsistent},
	}
	vs := Summarize(DefaultCategories, []Variant{{Name: "base"}, {Name: "a", Adapter: "a.gguf", Scale: 1}}, rs, cs, 1000, 1)
	if len(vs) != 2 {
		t.Fatalf("%d variants", len(vs))
	}
	b, a := vs[0], vs[1]
	if got := b.Categories["off_brand_tone"]; got.K != 3 || got.N != 4 || got.Rate.Rate != 0.75 || got.Change != nil {
		t.Errorf("base tone %+v", got)
	}
	if b.CombinedIssueRate != 1 || a.CombinedIssueRate != 0.25 {
		t.Errorf("combined %g → %g, want 1 → 0.25", b.CombinedIssueRate, a.CombinedIssueRate)
	}
	// tone per prompt: base (1, 0.5), adapter (0, 0.5): mean change (−1 + 0)/2 = −0.5;
	// the bootstrap over two prompts can only give −1, −0.5 or 0
	ch := a.Categories["off_brand_tone"].Change
	if ch == nil || ch.Delta != -0.5 || ch.CILow != -1 || ch.CIHigh != 0 {
		t.Errorf("tone change %+v, want −0.5 [−1, 0]", ch)
	}
	// combined: base (1, 1), adapter (0, 0.5): −0.75, bootstrap values −1, −0.75 or −0.5
	if ch := a.Combined.Change; ch == nil || ch.Delta != -0.75 || ch.CILow != -1 || ch.CIHigh != -0.5 {
		t.Errorf("combined change %+v, want −0.75 [−1, −0.5]", ch)
	}
	// hallucination: base (0, 0.5), adapter (0, 0): −0.25
	if ch := a.Categories["hallucination"].Change; ch.Delta != -0.25 {
		t.Errorf("hallucination change %+v", ch)
	}
	// base: −20 over 12 tokens; adapter −60/20 = −3, KL 5/20
	if !near(b.MeanLogpBase, -20.0/12, 1e-12) || a.MeanLogpBase != -3 || a.KLToBase != 0.25 || b.KLToBase != 0 {
		t.Errorf("fluency base %g adapter %g kl %g", b.MeanLogpBase, a.MeanLogpBase, a.KLToBase)
	}
	if !near(a.PerplexityB, math.Exp(3), 1e-9) {
		t.Errorf("perplexity %g", a.PerplexityB)
	}
	if b.WinRate != nil || a.WinRate == nil || *a.WinRate != 0.5 || a.Wins.Ties != 1 || a.Wins.Inconsistent != 1 {
		t.Errorf("win rates base %v adapter %+v", b.WinRate, a.Wins)
	}
	if a.MeanGenerated != 5 || b.MeanGenerated != 3 || a.LengthChange.Delta != 2 {
		t.Errorf("lengths %g %g %+v", b.MeanGenerated, a.MeanGenerated, a.LengthChange)
	}
	// order does not matter
	rev := append([]Response(nil), rs...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	vs2 := Summarize(DefaultCategories, []Variant{{Name: "base"}, {Name: "a", Adapter: "a.gguf", Scale: 1}}, rev, cs, 1000, 1)
	if *vs2[1].Categories["off_brand_tone"].Change != *ch {
		t.Errorf("reordered records changed the interval: %+v vs %+v", vs2[1].Categories["off_brand_tone"].Change, ch)
	}
}

func TestVariantNames(t *testing.T) {
	got := VariantNames([]Adapter{{Path: "runs/good/adapter.gguf", Scale: 1}, {Path: "runs/bad/adapter.gguf", Scale: 1},
		{Path: "x/tone.gguf", Scale: 0.5}, {Path: "y/base.gguf", Scale: 1}, {Path: "runs/good/adapter.gguf", Scale: 1}})
	want := []string{"base", "good/adapter", "bad/adapter", "tone:0.5", "base#4", "good/adapter#5"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("VariantNames = %v, want %v", got, want)
			break
		}
	}
}
