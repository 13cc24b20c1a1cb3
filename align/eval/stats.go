// Package eval measures an aligned model against its base: per category
// issue rates with Wilson 95 % intervals, the change with a paired
// bootstrap interval, the combined issue rate, a pairwise win rate judged in
// both orders, fluency (mean token log-prob under the base) and drift (mean
// KL of the adapter from the base), and preference metrics on a pairs file.
//
// The arithmetic (this file, table.go) is pure Go. Generation and scoring
// reach the native engine through the Generator and Scorer interfaces;
// native.go (cgo builds only) implements them with align/engine and
// bindings.
package eval

import (
	"math"
	"math/rand/v2"
	"sort"
)

// Z95 is the two-sided 95 % normal quantile.
const Z95 = 1.959963984540054

// Wilson returns the Wilson score interval for k successes in n trials at
// normal quantile z. n == 0 gives the uninformative [0, 1].
func Wilson(k, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	den := 1 + z2/nf
	mid := (p + z2/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / den
	lo, hi = mid-half, mid+half
	// k == 0 and k == n are exact at the ends; clamp rounding
	if k == 0 {
		lo = 0
	}
	if k == n {
		hi = 1
	}
	return math.Max(0, lo), math.Min(1, hi)
}

// Rate is a proportion with its Wilson 95 % interval.
type Rate struct {
	K      int     `json:"k"` // responses with the property
	N      int     `json:"n"` // responses judged
	Rate   float64 `json:"rate"`
	CILow  float64 `json:"ci_low"`
	CIHigh float64 `json:"ci_high"`
}

// NewRate computes k/n and its interval (rate 0 when n is 0).
func NewRate(k, n int) Rate {
	r := Rate{K: k, N: n}
	if n > 0 {
		r.Rate = float64(k) / float64(n)
	}
	r.CILow, r.CIHigh = Wilson(k, n, Z95)
	return r
}

// Change is the difference after − before with a 95 % interval.
type Change struct {
	Delta  float64 `json:"delta"`
	CILow  float64 `json:"ci_low"`
	CIHigh float64 `json:"ci_high"`
	Method string  `json:"method"` // "paired_bootstrap"
	Iters  int     `json:"iterations,omitempty"`
}

// PairedBootstrap resamples clusters (prompts) with replacement and returns
// the mean of after − before with a percentile 95 % interval. before[i]
// and after[i] are cluster i's values (the mean over its samples), so the
// interval accounts for samples of one prompt being correlated. The same
// seed gives the same interval.
func PairedBootstrap(before, after []float64, iters int, seed uint64) Change {
	n := len(before)
	c := Change{Method: "paired_bootstrap", Iters: iters}
	if n == 0 || len(after) != n {
		return c
	}
	d := make([]float64, n)
	for i := range d {
		d[i] = after[i] - before[i]
	}
	c.Delta = mean(d)
	if iters <= 0 {
		c.CILow, c.CIHigh = c.Delta, c.Delta
		return c
	}
	rng := rand.New(rand.NewPCG(seed, 0x626f6f74))
	ms := make([]float64, iters)
	for b := range ms {
		s := 0.0
		for range n {
			s += d[rng.IntN(n)]
		}
		ms[b] = s / float64(n)
	}
	sort.Float64s(ms)
	c.CILow, c.CIHigh = quantile(ms, 0.025), quantile(ms, 0.975)
	return c
}

func mean(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// quantile interpolates linearly in sorted xs (type 7).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	h := q * float64(len(xs)-1)
	lo := int(math.Floor(h))
	if lo >= len(xs)-1 {
		return xs[len(xs)-1]
	}
	return xs[lo] + (h-float64(lo))*(xs[lo+1]-xs[lo])
}

// Outcomes of one adapter-vs-base comparison judged in both orders.
const (
	Win          = "win"          // both orders prefer the adapter
	Loss         = "loss"         // both orders prefer the base
	Tie          = "tie"          // both orders say tie
	Inconsistent = "inconsistent" // the orders disagree (a tie in one and a winner in the other included)
)

// Judge winners by position, as backend.Verdict names them.
const (
	posA   = "A"
	posB   = "B"
	posTie = "tie"
)

// Outcome combines the two orders' winners: ab is the winner when the
// adapter is shown first (A), ba when the base is shown first. As align
// rank does, a comparison counts only when both orders name the same
// response; one tie against one winner is inconsistent.
func Outcome(ab, ba string) string {
	side := func(winner string, adapterPos string) string {
		switch winner {
		case posTie:
			return Tie
		case adapterPos:
			return Win
		}
		return Loss
	}
	x, y := side(ab, posA), side(ba, posB)
	if x != y {
		return Inconsistent
	}
	return x
}

// WinRate counts comparisons of an adapter against the base.
type WinRate struct {
	N            int     `json:"n"`
	Wins         int     `json:"wins"`
	Losses       int     `json:"losses"`
	Ties         int     `json:"ties"`
	Inconsistent int     `json:"inconsistent"`
	WinRate      float64 `json:"win_rate"` // wins / n (ties and inconsistent comparisons are not wins)
	CILow        float64 `json:"ci_low"`
	CIHigh       float64 `json:"ci_high"`
	// WinRateTiesHalf counts ties and inconsistent comparisons as half a
	// win each (the convention of AlpacaEval-style leaderboards).
	WinRateTiesHalf float64 `json:"win_rate_ties_half"`
	LossRate        float64 `json:"loss_rate"`
	// Consistency is the share of comparisons whose orders agree.
	Consistency float64 `json:"consistency"`
}

// TallyWins summarises outcomes (Win, Loss, Tie, Inconsistent).
func TallyWins(outcomes []string) WinRate {
	var w WinRate
	for _, o := range outcomes {
		w.N++
		switch o {
		case Win:
			w.Wins++
		case Loss:
			w.Losses++
		case Tie:
			w.Ties++
		default:
			w.Inconsistent++
		}
	}
	r := NewRate(w.Wins, w.N)
	w.WinRate, w.CILow, w.CIHigh = r.Rate, r.CILow, r.CIHigh
	if w.N > 0 {
		n := float64(w.N)
		w.WinRateTiesHalf = (float64(w.Wins) + 0.5*float64(w.Ties+w.Inconsistent)) / n
		w.LossRate = float64(w.Losses) / n
		w.Consistency = float64(w.N-w.Inconsistent) / n
	}
	return w
}

// PairScore is one preference pair's summed response log-probs under the
// policy (an adapter) and the reference (the base).
type PairScore struct {
	Objective  string
	Beta       float64
	PiW, PiL   float64 // policy log-prob sums of the chosen and rejected responses
	RefW, RefL float64 // reference log-prob sums
}

// Margin is the implicit reward margin β((πw − ρw) − (πl − ρl)), as align
// train logs it (rewards/margins).
func (p PairScore) Margin() float64 {
	return p.Beta*(p.PiW-p.RefW) - p.Beta*(p.PiL-p.RefL)
}

// PrefMetrics are pair accuracy (margin > 0) and the mean margin.
type PrefMetrics struct {
	N          int     `json:"n"`
	Accuracy   float64 `json:"accuracy"`
	CILow      float64 `json:"ci_low"`
	CIHigh     float64 `json:"ci_high"`
	MeanMargin float64 `json:"margin"`
	// PolicyAccuracy counts pairs where the policy alone gives the chosen
	// response the higher log-prob (no reference), a check independent of β.
	PolicyAccuracy float64 `json:"policy_accuracy"`
}

// Preference returns metrics over all pairs and per objective ("" objectives
// are grouped as "unlabelled").
func Preference(ps []PairScore) (all PrefMetrics, per map[string]PrefMetrics) {
	group := map[string][]PairScore{}
	for _, p := range ps {
		o := p.Objective
		if o == "" {
			o = "unlabelled"
		}
		group[o] = append(group[o], p)
	}
	per = map[string]PrefMetrics{}
	for o, g := range group {
		per[o] = prefOf(g)
	}
	return prefOf(ps), per
}

func prefOf(ps []PairScore) PrefMetrics {
	m := PrefMetrics{N: len(ps)}
	if len(ps) == 0 {
		return m
	}
	k, kp, sum := 0, 0, 0.0
	for _, p := range ps {
		mg := p.Margin()
		sum += mg
		if mg > 0 {
			k++
		}
		if p.PiW > p.PiL {
			kp++
		}
	}
	r := NewRate(k, len(ps))
	m.Accuracy, m.CILow, m.CIHigh = r.Rate, r.CILow, r.CIHigh
	m.MeanMargin = sum / float64(len(ps))
	m.PolicyAccuracy = float64(kp) / float64(len(ps))
	return m
}

// KL returns KL(softmax(p) ‖ softmax(q)) for two logit rows.
func KL(p, q []float32) float64 {
	lp, lq := logSoftmax(p), logSoftmax(q)
	kl := 0.0
	for i := range lp {
		if pi := math.Exp(lp[i]); pi > 0 {
			kl += pi * (lp[i] - lq[i])
		}
	}
	return math.Max(kl, 0)
}

func logSoftmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	ls := m + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - ls
	}
	return out
}
