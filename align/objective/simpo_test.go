package objective

import (
	"math"
	"testing"
)

// SimPO by hand from the paper's formula: chosen −2 nats over 4 tokens,
// rejected −10 over 5; β 2: rewards 2·(−0.5) = −1 and 2·(−2) = −4, margin
// 3, minus γ 0.5: z = 2.5, loss = log(1 + e^−2.5) = 0.0788897. The same
// sums over other lengths give other rewards: length normalisation.
func TestSimPOLossByHand(t *testing.T) {
	p := PairLogps{PiW: -2, PiL: -10, NW: 4, NL: 5, RefW: 7, RefL: -7} // the reference is not read
	σ := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, c := range []struct {
		name                       string
		p                          PairLogps
		eps                        float64
		loss, dw, dl, rw, rl, marg float64
	}{
		// dL/dz = −σ(−2.5) = −0.0758582; dz/dπw = β/4, dz/dπl = −β/5
		{"paper", p, 0, 0.0788897343, -σ(-2.5) * 2 / 4, σ(-2.5) * 2 / 5, -1, -4, 3},
		// ε 0.1: 0.9·log(1+e^−2.5) + 0.1·log(1+e^2.5) = 0.3288897
		{"label smoothing", p, 0.1, 0.3288897343, (-0.9*σ(-2.5) + 0.1*σ(2.5)) * 2 / 4, -(-0.9*σ(-2.5) + 0.1*σ(2.5)) * 2 / 5, -1, -4, 3},
		// the same sums, chosen over 10 tokens: rewards −0.4 and −4, z = 3.1
		{"longer chosen", PairLogps{PiW: -2, PiL: -10, NW: 10, NL: 5}, 0, math.Log1p(math.Exp(-3.1)), -σ(-3.1) * 2 / 10, σ(-3.1) * 2 / 5, -0.4, -4, 3.6},
		// chosen −2 over 4 against rejected −1 over 1: the sum prefers the
		// rejected, the mean the chosen; z = 2·(−0.5 − (−1)) − 0.5 = 0.5
		{"per-token", PairLogps{PiW: -2, PiL: -1, NW: 4, NL: 1}, 0, math.Log1p(math.Exp(-0.5)), -σ(-0.5) * 2 / 4, σ(-0.5) * 2 / 1, -1, -2, 1},
	} {
		l, err := SimPOLoss(2, 0.5, c.eps, c.p)
		if err != nil {
			t.Fatal(err)
		}
		if !near(l.Loss, c.loss, 1e-9) || !near(l.DPiW, c.dw, 1e-9) || !near(l.DPiL, c.dl, 1e-9) {
			t.Errorf("%s: loss %.10g d %.10g %.10g, want %.10g %.10g %.10g", c.name, l.Loss, l.DPiW, l.DPiL, c.loss, c.dw, c.dl)
		}
		if !near(l.RewardW, c.rw, 1e-12) || !near(l.RewardL, c.rl, 1e-12) || !near(l.Margin, c.marg, 1e-12) || !l.Correct {
			t.Errorf("%s: rewards %g %g margin %g correct %v, want %g %g %g", c.name, l.RewardW, l.RewardL, l.Margin, l.Correct, c.rw, c.rl, c.marg)
		}
	}
	// the margin γ: at z = 0 (reward gap exactly γ) the loss is log 2
	l, _ := SimPOLoss(2, 3, 0, p)
	if !near(l.Loss, math.Ln2, 1e-12) {
		t.Errorf("reward gap equal to γ: loss %g, want log 2", l.Loss)
	}
	if _, err := SimPOLoss(0, 0.5, 0, p); err == nil {
		t.Error("β 0 accepted")
	}
	if _, err := SimPOLoss(2, 0.5, 0, PairLogps{PiW: -1, PiL: -1}); err == nil {
		t.Error("no token counts accepted")
	}
}

func TestSimPOLossGradients(t *testing.T) {
	for _, eps := range []float64{0, 0.2} {
		for _, p := range []PairLogps{{PiW: -31, PiL: -27, NW: 7, NL: 9}, {PiW: -1e4, PiL: -5, NW: 3, NL: 2}} {
			l, _ := SimPOLoss(2.5, 0.8, eps, p)
			if math.IsNaN(l.Loss) || math.IsInf(l.Loss, 0) {
				t.Fatalf("%+v: loss %g", p, l.Loss)
			}
			h := 1e-6 * math.Max(1, math.Abs(p.PiW))
			up, dn := p, p
			up.PiW += h
			dn.PiW -= h
			lu, _ := SimPOLoss(2.5, 0.8, eps, up)
			ld, _ := SimPOLoss(2.5, 0.8, eps, dn)
			if fd := (lu.Loss - ld.Loss) / (2 * h); !near(fd, l.DPiW, 1e-5) {
				t.Errorf("ε %g %+v: dL/dπw = %g, finite difference %g", eps, p, l.DPiW, fd)
			}
			h = 1e-6 * math.Max(1, math.Abs(p.PiL))
			up, dn = p, p
			up.PiL += h
			dn.PiL -= h
			lu, _ = SimPOLoss(2.5, 0.8, eps, up)
			ld, _ = SimPOLoss(2.5, 0.8, eps, dn)
			if fd := (lu.Loss - ld.Loss) / (2 * h); !near(fd, l.DPiL, 1e-5) {
				t.Errorf("ε %g %+v: dL/dπl = %g, finite difference %g", eps, p, l.DPiL, fd)
			}
		}
	}
}
