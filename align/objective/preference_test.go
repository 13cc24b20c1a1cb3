package objective

import (
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

// Hand-computed values: with πw−ρw = 2, πl−ρl = −1, h = 3.
func TestPreferenceLossClosedForm(t *testing.T) {
	p := PairLogps{PiW: -10, RefW: -12, PiL: -21, RefL: -20, NW: 4, NL: 5}
	cases := []struct {
		method           string
		beta, eps        float64
		loss, dpiw, dpil float64
	}{
		// −log σ(0.3) = log(1+e^−0.3) = 0.554355; d/dh = −0.1·σ(−0.3) = −0.042556
		{DPO, 0.1, 0, 0.5543552, -0.04255575, 0.04255575},
		// ε = 0.1: 0.9·0.554355 + 0.1·log(1+e^0.3)=0.854355 → 0.584355
		{CDPO, 0.1, 0.1, 0.5843552, 0.1 * (-0.9*0.42555748 + 0.1*0.57444252), -0.1 * (-0.9*0.42555748 + 0.1*0.57444252)},
		// h̄ = 2/4 − (−1/5) = 0.7; 1/(2β) = 5; (0.7−5)² = 18.49; d = 2(−4.3)/4, −2(−4.3)/5
		{IPO, 0.1, 0, 18.49, -2.15, 1.72},
		// 1 − 0.1·3 = 0.7
		{Hinge, 0.1, 0, 0.7, -0.1, 0.1},
	}
	for _, c := range cases {
		got, err := PreferenceLoss(c.method, c.beta, c.eps, p)
		if err != nil {
			t.Fatal(err)
		}
		if !near(got.Loss, c.loss, 1e-6) || !near(got.DPiW, c.dpiw, 1e-6) || !near(got.DPiL, c.dpil, 1e-6) {
			t.Errorf("%s: got loss %.7g d %.7g %.7g, want %.7g %.7g %.7g", c.method, got.Loss, got.DPiW, got.DPiL, c.loss, c.dpiw, c.dpil)
		}
		if !near(got.RewardW, 0.2, 1e-9) || !near(got.RewardL, -0.1, 1e-9) || !near(got.Margin, 0.3, 1e-9) || !got.Correct {
			t.Errorf("%s: rewards %+v", c.method, got)
		}
	}
	// hinge is flat once βh ≥ 1
	got, _ := PreferenceLoss(Hinge, 1, 0, p)
	if got.Loss != 0 || got.DPiW != 0 {
		t.Errorf("hinge beyond margin: %+v", got)
	}
}

// Gradients agree with finite differences of the loss, for every method.
func TestPreferenceLossGradients(t *testing.T) {
	p := PairLogps{PiW: -30.5, RefW: -31, PiL: -28, RefL: -27.2, NW: 7, NL: 9}
	for _, m := range []string{DPO, CDPO, IPO, Hinge} {
		l, _ := PreferenceLoss(m, 0.3, 0.2, p)
		const h = 1e-6
		up, dn := p, p
		up.PiW += h
		dn.PiW -= h
		lu, _ := PreferenceLoss(m, 0.3, 0.2, up)
		ld, _ := PreferenceLoss(m, 0.3, 0.2, dn)
		if fd := (lu.Loss - ld.Loss) / (2 * h); !near(fd, l.DPiW, 1e-5) {
			t.Errorf("%s: dL/dπw = %g, finite difference %g", m, l.DPiW, fd)
		}
		up, dn = p, p
		up.PiL += h
		dn.PiL -= h
		lu, _ = PreferenceLoss(m, 0.3, 0.2, up)
		ld, _ = PreferenceLoss(m, 0.3, 0.2, dn)
		if fd := (lu.Loss - ld.Loss) / (2 * h); !near(fd, l.DPiL, 1e-5) {
			t.Errorf("%s: dL/dπl = %g, finite difference %g", m, l.DPiL, fd)
		}
	}
}

func TestLossStableForLargeMargins(t *testing.T) {
	for _, h := range []float64{-5000, 5000} {
		l, err := PreferenceLoss(DPO, 1, 0, PairLogps{PiW: h})
		if err != nil || math.IsNaN(l.Loss) || math.IsInf(l.Loss, 0) || math.IsNaN(l.DPiW) {
			t.Errorf("h=%g: %+v %v", h, l, err)
		}
	}
	if _, err := PreferenceLoss("ppo", 0.1, 0, PairLogps{}); err == nil {
		t.Error("unknown method accepted")
	}
	if _, err := PreferenceLoss(DPO, 0, 0, PairLogps{}); err == nil {
		t.Error("beta 0 accepted")
	}
}

func TestBetaTable(t *testing.T) {
	b := BetaTable{Table: DefaultBetas}
	for obj, want := range map[string]float64{"safety": 0.05, "Tone": 0.1, "escalation": 0.1, "accuracy": 0.3, "other": DefaultBeta} {
		if got := b.Beta(obj); got != want {
			t.Errorf("Beta(%q) = %g, want %g", obj, got, want)
		}
	}
	b.Override = 0.5
	if b.Beta("safety") != 0.5 {
		t.Error("override ignored")
	}
	m := BetaTable{Table: MergeBetas(map[string]float64{"Tone": 0.2, "default": 0.25})}
	for obj, want := range map[string]float64{"tone": 0.2, "safety": 0.05, "accuracy": 0.3, "style": 0.25} {
		if got := m.Beta(obj); got != want {
			t.Errorf("merged Beta(%q) = %g, want %g", obj, got, want)
		}
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{LR: 1, Warmup: 4, Total: 14, Kind: "cosine"}
	want := map[int]float64{0: 0.25, 3: 1, 4: 1, 9: 0.5, 14: 0}
	for step, w := range want {
		if got := s.At(step); !near(got, w, 1e-9) {
			t.Errorf("cosine At(%d) = %g, want %g", step, got, w)
		}
	}
	s.Kind = "linear"
	if got := s.At(9); !near(got, 0.5, 1e-9) {
		t.Errorf("linear At(9) = %g", got)
	}
	s.Kind, s.MinRatio = "cosine", 0.1
	if got := s.At(14); !near(got, 0.1, 1e-9) {
		t.Errorf("min ratio: %g", got)
	}
}

func TestMetricsMeans(t *testing.T) {
	var m Metrics
	m.Add(PairLoss{Loss: 1, RewardW: 0.2, RewardL: -0.1, Margin: 0.3, Correct: true}, PairLogps{PiW: -10, PiL: -20})
	m.Add(PairLoss{Loss: 3, RewardW: -0.2, RewardL: 0.1, Margin: -0.3}, PairLogps{PiW: -30, PiL: -10})
	got := m.Map()
	want := map[string]float64{"loss": 2, "rewards/chosen": 0, "rewards/rejected": 0, "rewards/margins": 0,
		"rewards/accuracies": 0.5, "logps/chosen": -20, "logps/rejected": -15}
	for k, w := range want {
		if !near(got[k], w, 1e-12) {
			t.Errorf("%s = %g, want %g", k, got[k], w)
		}
	}
}
