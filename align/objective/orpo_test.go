package objective

import (
	"math"
	"testing"
)

// ORPO by hand from the paper's formula: chosen −2 nats over 4 tokens
// (ā = −0.5, p = e^−0.5 = 0.606531), rejected −10 over 5 (b̄ = −2,
// p = e^−2 = 0.135335); odds p/(1−p): log-odds 0.432752 and −1.854587,
// z = 2.287339, log σ(z) = −0.0967059; λ 0.1: loss = 0.5 + 0.00967059.
func TestORPOLossByHand(t *testing.T) {
	p := PairLogps{PiW: -2, PiL: -10, NW: 4, NL: 5, RefW: 123, RefL: -456} // the reference is not read
	l, terms, err := ORPOLoss(0.1, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"loss", l.Loss, 0.50967058636},
		{"nll", terms.NLL, 0.5},
		{"log-odds z", terms.LogOdds, 2.2873386717},
		{"log σ(z)", terms.LogOddsRatio, -0.0967058636},
		// dL/dā = −1 − λσ(−z)/(1−p_w), over 4 tokens; dL/db̄ = λσ(−z)/(1−p_l), over 5
		{"dPiW", l.DPiW, -0.2558566831},
		{"dPiL", l.DPiL, 0.0021320868},
		{"reward chosen", l.RewardW, -0.05},
		{"reward rejected", l.RewardL, -0.2},
		{"margin", l.Margin, 0.15},
	} {
		if !near(c.got, c.want, 1e-9) {
			t.Errorf("%s = %.10g, want %.10g", c.name, c.got, c.want)
		}
	}
	if !l.Correct {
		t.Error("the more likely chosen response is not counted correct")
	}
	if _, _, err := ORPOLoss(0, p); err == nil {
		t.Error("λ 0 accepted")
	}
	if _, _, err := ORPOLoss(0.1, PairLogps{PiW: -1, PiL: -1}); err == nil {
		t.Error("no token counts accepted")
	}
}

// The gradients agree with central differences of the loss, from nearly
// certain responses (mean log-prob −1e-4, where 1 − p cancels) to unlikely
// ones (−30 per token, where p underflows 1 − p).
func TestORPOLossGradients(t *testing.T) {
	for _, p := range []PairLogps{
		{PiW: -3.2, PiL: -7.9, NW: 6, NL: 11},
		{PiW: -0.0004, PiL: -0.9, NW: 4, NL: 3},
		{PiW: -300, PiL: -240, NW: 10, NL: 8},
		{PiW: -60, PiL: -0.001, NW: 2, NL: 9},
	} {
		l, _, err := ORPOLoss(0.25, p)
		if err != nil {
			t.Fatal(err)
		}
		h := 1e-6 * math.Max(1, math.Abs(p.PiW))
		up, dn := p, p
		up.PiW += h
		dn.PiW -= h
		lu, _, _ := ORPOLoss(0.25, up)
		ld, _, _ := ORPOLoss(0.25, dn)
		if fd := (lu.Loss - ld.Loss) / (2 * h); !near(fd, l.DPiW, 1e-5) {
			t.Errorf("%+v: dL/dπw = %g, finite difference %g", p, l.DPiW, fd)
		}
		h = 1e-6 * math.Max(1, math.Abs(p.PiL))
		up, dn = p, p
		up.PiL += h
		dn.PiL -= h
		lu, _, _ = ORPOLoss(0.25, up)
		ld, _, _ = ORPOLoss(0.25, dn)
		if fd := (lu.Loss - ld.Loss) / (2 * h); !near(fd, l.DPiL, 1e-5) {
			t.Errorf("%+v: dL/dπl = %g, finite difference %g", p, l.DPiL, fd)
		}
	}
}

// log(1 − eˣ) keeps its digits where the naive forms lose them, and a
// certain response (mean log-prob 0) gives finite values.
func TestLog1mExp(t *testing.T) {
	for _, c := range []struct{ x, want float64 }{
		{-1e-10, math.Log(1e-10) - 5e-11}, // 1 − e^−ε = ε − ε²/2: log ≈ log ε − ε/2
		{-0.5, math.Log(1 - math.Exp(-0.5))},
		{-2, math.Log(1 - math.Exp(-2))},
		{-50, -math.Exp(-50)}, // log(1 − δ) ≈ −δ
	} {
		if got := Log1mExp(c.x); !near(got, c.want, 1e-12) {
			t.Errorf("Log1mExp(%g) = %.17g, want %.17g", c.x, got, c.want)
		}
	}
	for _, p := range []PairLogps{{PiW: 0, PiL: -3, NW: 3, NL: 3}, {PiW: -3, PiL: 0, NW: 3, NL: 3}, {PiW: 0, PiL: 0, NW: 1, NL: 1}} {
		l, terms, err := ORPOLoss(0.1, p)
		for _, v := range []float64{l.Loss, l.DPiW, l.DPiL, terms.LogOdds, terms.LogOddsRatio} {
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("%+v: %+v %+v %v", p, l, terms, err)
				break
			}
		}
	}
}
