package objective

import "testing"

// Hand-computed values of the paper's formulas (β = 0.1).
func TestKTOClosedForm(t *testing.T) {
	// z0: mismatched log-ratios 1 and 0.5 → 0.75; a negative mean is clamped
	if z := KTOReference([]float64{-20, -30}, []float64{-21, -30.5}); !near(z, 0.75, 1e-12) {
		t.Errorf("z0 = %g, want 0.75", z)
	}
	if z := KTOReference([]float64{-20, -30}, []float64{-19, -29.8}); z != 0 {
		t.Errorf("z0 of a negative KL estimate = %g, want 0 (clamped)", z)
	}
	if z := KTOReference(nil, nil); z != 0 {
		t.Errorf("z0 of no sequences = %g", z)
	}
	cases := []struct {
		name          string
		z0, pi, ref   float64
		desirable     bool
		wD, wU        float64
		loss, dpi, rw float64
	}{
		// r = 2: 1 − σ(0.1·(2 − 0.75)) = 1 − σ(0.125) = 0.4687906; d = −β σ(1−σ)
		{"desirable", 0.75, -10, -12, true, 1, 1.5, 0.4687906266, -0.0249025975, 0.2},
		// z0 clamped to 0: 1 − σ(0.2)
		{"desirable, z0 0", 0, -10, -12, true, 1, 1.5, 0.4501660027, -0.0247516573, 0.2},
		// λ_D scales loss and gradient
		{"desirable, λ_D 2", 0, -10, -12, true, 2, 1.5, 2 * 0.4501660027, -2 * 0.0247516573, 0.2},
		// r = −1: λ_U (1 − σ(0.1·(0.75 + 1))) = 1.5 (1 − σ(0.175))
		{"undesirable", 0.75, -21, -20, false, 1, 1.5, 0.6845419691, 0.0372143497, -0.1},
		{"undesirable, z0 0", 0, -21, -20, false, 1, 1.5, 0.7125312188, 0.0374064060, -0.1},
	}
	for _, c := range cases {
		got, err := KTOExample(0.1, c.z0, c.pi, c.ref, c.desirable, c.wD, c.wU)
		if err != nil {
			t.Fatal(err)
		}
		if !near(got.Loss, c.loss, 1e-9) || !near(got.DPi, c.dpi, 1e-8) || !near(got.Reward, c.rw, 1e-12) {
			t.Errorf("%s: got %+v, want loss %.10g d %.10g reward %g", c.name, got, c.loss, c.dpi, c.rw)
		}
		// the derivative is the loss's (z0 held: it is detached)
		const h = 1e-6
		up, _ := KTOExample(0.1, c.z0, c.pi+h, c.ref, c.desirable, c.wD, c.wU)
		dn, _ := KTOExample(0.1, c.z0, c.pi-h, c.ref, c.desirable, c.wD, c.wU)
		if fd := (up.Loss - dn.Loss) / (2 * h); !near(fd, got.DPi, 1e-6) {
			t.Errorf("%s: dL/dπ %g, finite difference %g", c.name, got.DPi, fd)
		}
	}
	if _, err := KTOExample(0, 0, 0, 0, true, 1, 1); err == nil {
		t.Error("β 0 accepted")
	}
}

func TestKTOWeightAdvice(t *testing.T) {
	// 300 desirable, 100 undesirable, equal weights: ratio 3, λ_D in [1/3, 4/9] or λ_U in [2.25, 3]
	r, ok, dLo, dHi, uLo, uHi := KTOWeightAdvice(300, 100, 1, 1)
	if ok || !near(r, 3, 1e-12) || !near(dLo, 1.0/3, 1e-12) || !near(dHi, 4.0/9, 1e-12) || !near(uLo, 2.25, 1e-12) || !near(uHi, 3, 1e-12) {
		t.Errorf("got ratio %g ok %v λ_D [%g, %g] λ_U [%g, %g]", r, ok, dLo, dHi, uLo, uHi)
	}
	if _, ok, _, _, _, _ := KTOWeightAdvice(120, 100, 1, 1); !ok {
		t.Error("ratio 1.2 is in [1, 4/3]")
	}
	if _, ok, _, _, _, _ := KTOWeightAdvice(100, 100, 1, 1); !ok {
		t.Error("balanced data with equal weights is in range")
	}
}

func TestKTOMetrics(t *testing.T) {
	var m KTOMetrics
	m.KL = 0.3
	m.Add(KTOLoss{Loss: 0.4, Reward: 0.2}, -10, true)
	m.Add(KTOLoss{Loss: 0.6, Reward: 0.4}, -12, true)
	m.Add(KTOLoss{Loss: 0.8, Reward: -0.1}, -20, false)
	got := m.Map()
	want := map[string]float64{"loss": 0.6, "kl": 0.3, "count/chosen": 2, "count/rejected": 1,
		"rewards/chosen_sum": 0.6, "logps/chosen_sum": -22, "rewards/rejected_sum": -0.1, "logps/rejected_sum": -20,
		"rewards/chosen": 0.3, "logps/chosen": -11, "rewards/rejected": -0.1, "logps/rejected": -20, "rewards/margins": 0.4}
	for k, v := range want {
		if !near(got[k], v, 1e-12) {
			t.Errorf("%s = %g, want %g", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("keys %v", got)
	}
}
