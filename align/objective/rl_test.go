package objective

import (
	"math"
	"testing"
)

func nearT(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.10g, want %.10g", what, got, want)
	}
}

// GAE on hand numbers: rewards (0, 0, 1), values (0.5, 0.2, 0.6), γ = 0.9,
// λ = 0.5, V after the end 0.
func TestGAEHandNumbers(t *testing.T) {
	adv, ret := GAE([]float64{0, 0, 1}, []float64{0.5, 0.2, 0.6}, 0.9, 0.5)
	// δ2 = 1 − 0.6 = 0.4; δ1 = 0 + 0.9·0.6 − 0.2 = 0.34; δ0 = 0 + 0.9·0.2 − 0.5 = −0.32
	// A2 = 0.4; A1 = 0.34 + 0.45·0.4 = 0.52; A0 = −0.32 + 0.45·0.52 = −0.086
	want := []float64{-0.086, 0.52, 0.4}
	for i := range want {
		nearT(t, "A", adv[i], want[i], 1e-12)
		nearT(t, "R", ret[i], want[i]+[]float64{0.5, 0.2, 0.6}[i], 1e-12)
	}
	// γ = λ = 1 (the PPO defaults but λ): A_t = Σ_{k≥t} r_k − V_t
	adv, _ = GAE([]float64{0.1, -0.2, 1}, []float64{0.3, 0.1, 0.2}, 1, 1)
	for i, w := range []float64{0.9 - 0.3, 0.8 - 0.1, 1 - 0.2} {
		nearT(t, "A(γ=λ=1)", adv[i], w, 1e-12)
	}
	// λ = 0: one-step TD errors
	adv, _ = GAE([]float64{0, 2}, []float64{1, 3}, 1, 0)
	nearT(t, "A0(λ=0)", adv[0], 0+3-1, 1e-12)
	nearT(t, "A1(λ=0)", adv[1], 2-3, 1e-12)
}

func TestWhiten(t *testing.T) {
	w := Whiten([]float64{1, 2, 3, 4})
	// mean 2.5, population std sqrt(1.25)
	s := math.Sqrt(1.25)
	for i, x := range []float64{1, 2, 3, 4} {
		nearT(t, "whiten", w[i], (x-2.5)/(s+1e-8), 1e-12)
	}
	var m, v float64
	for _, x := range w {
		m += x
		v += x * x
	}
	nearT(t, "whitened mean", m/4, 0, 1e-12)
	nearT(t, "whitened variance", v/4, 1, 1e-6)
	if w := Whiten([]float64{5}); w[0] != 0 {
		t.Errorf("a single value whitens to %g, want 0", w[0])
	}
}

func TestGroupAdvantages(t *testing.T) {
	// two groups of 3: (1, 0, 0) and (2, 2, 2) (degenerate)
	adv, deg := GroupAdvantages([]float64{1, 0, 0, 2, 2, 2}, 3, false)
	if len(deg) != 2 || deg[0] || !deg[1] {
		t.Fatalf("degenerate = %v, want [false true]", deg)
	}
	// mean 1/3, unbiased std sqrt(((2/3)² + 2(1/3)²)/2) = sqrt(1/3)
	s := math.Sqrt(1.0/3) + 1e-4
	for i, w := range []float64{(2.0 / 3) / s, (-1.0 / 3) / s, (-1.0 / 3) / s, 0, 0, 0} {
		nearT(t, "A", adv[i], w, 1e-12)
	}
	// Dr. GRPO: no std division
	adv, _ = GroupAdvantages([]float64{1, 0, 0, 4}, 2, true)
	for i, w := range []float64{0.5, -0.5, -2, 2} {
		nearT(t, "A(no std)", adv[i], w, 1e-12)
	}
	// G = 2 with ±1 rewards: advantages ±1/(√2 + 1e-4) (the DPO-like case)
	adv, _ = GroupAdvantages([]float64{1, -1}, 2, false)
	nearT(t, "A(G=2)", adv[0], 1/(math.Sqrt2+1e-4), 1e-12)
	nearT(t, "A(G=2)", adv[1], -1/(math.Sqrt2+1e-4), 1e-12)
}

// The clip logic of the surrogate on every branch.
func TestSurrogateClip(t *testing.T) {
	eps := 0.2
	cases := []struct {
		name          string
		logratio, adv float64
		loss, grad    float64
		clipped       bool
	}{
		// inside the trust region: −A ρ, gradient −A ρ
		{"inside A>0", math.Log(1.1), 2, -2 * 1.1, -2 * 1.1, false},
		{"inside A<0", math.Log(0.9), -1, 0.9, 0.9, false},
		// A > 0 and ρ > 1+ε: the clipped term −A(1+ε) is the max: no gradient
		{"A>0 ratio high", math.Log(1.5), 1, -1.2, 0, true},
		// A > 0 and ρ < 1−ε: −A ρ is the max (the pessimistic bound): gradient
		{"A>0 ratio low", math.Log(0.5), 1, -0.5, -0.5, false},
		// A < 0 and ρ < 1−ε: clipped −A(1−ε) = 0.8 is the max: no gradient
		{"A<0 ratio low", math.Log(0.5), -1, 0.8, 0, true},
		// A < 0 and ρ > 1+ε: −A ρ is the max: gradient
		{"A<0 ratio high", math.Log(1.5), -1, 1.5, 1.5, false},
	}
	for _, c := range cases {
		l, g, cl := Surrogate(c.logratio-3, -3, c.adv, eps)
		nearT(t, c.name+" loss", l, c.loss, 1e-12)
		nearT(t, c.name+" grad", g, c.grad, 1e-12)
		if cl != c.clipped {
			t.Errorf("%s: clipped = %v, want %v", c.name, cl, c.clipped)
		}
	}
}

func TestValueLossClip(t *testing.T) {
	// inside: ½(v − R)², gradient v − R
	l, d, c := ValueLoss(1.1, 1.0, 2.0, 0.2)
	nearT(t, "inside loss", l, 0.5*0.81, 1e-12)
	nearT(t, "inside grad", d, -0.9, 1e-12)
	if c {
		t.Error("inside: clipped")
	}
	// v moved past old + ε away from R: the clipped term (1.2 − 0)² is
	// smaller than (1.5 − 0)²: unclipped is the max, gradient v − R
	l, d, c = ValueLoss(1.5, 1.0, 0.0, 0.2)
	nearT(t, "away loss", l, 0.5*2.25, 1e-12)
	nearT(t, "away grad", d, 1.5, 1e-12)
	if c {
		t.Error("away: clipped")
	}
	// v moved past old + ε towards R = 2: clipped (1.2 − 2)² > (1.5 − 2)²
	// is the max and constant in v: no gradient
	l, d, c = ValueLoss(1.5, 1.0, 2.0, 0.2)
	nearT(t, "towards loss", l, 0.5*0.64, 1e-12)
	nearT(t, "towards grad", d, 0, 0)
	if !c {
		t.Error("towards: not clipped")
	}
}

func TestK3(t *testing.T) {
	k, d := K3(-1, -1)
	nearT(t, "k3 at equal", k, 0, 0)
	nearT(t, "dk3 at equal", d, 0, 0)
	// ref − logp = 0.5: e^0.5 − 0.5 − 1
	k, d = K3(-2, -1.5)
	nearT(t, "k3", k, math.Exp(0.5)-1.5, 1e-12)
	nearT(t, "dk3", d, 1-math.Exp(0.5), 1e-12)
	// k3 ≥ 0 everywhere, and its derivative matches central differences
	for _, x := range []float64{-3, -0.7, 0, 0.4, 2} {
		k, d := K3(x, 0)
		if k < 0 {
			t.Errorf("k3(%g) = %g < 0", x, k)
		}
		kp, _ := K3(x+1e-6, 0)
		km, _ := K3(x-1e-6, 0)
		nearT(t, "dk3 fd", d, (kp-km)/2e-6, 1e-6)
	}
}

func TestKLController(t *testing.T) {
	c := KLController{Coef: 0.1, Target: 6, Horizon: 100}
	c.Update(12, 10) // error clipped to +0.2: × (1 + 0.2·10/100)
	nearT(t, "coef up", c.Coef, 0.1*1.02, 1e-12)
	c.Update(3, 10) // −0.5 clipped to −0.2
	nearT(t, "coef down", c.Coef, 0.1*1.02*0.98, 1e-12)
	f := KLController{Coef: 0.1}
	f.Update(100, 10)
	nearT(t, "fixed", f.Coef, 0.1, 0)
}
