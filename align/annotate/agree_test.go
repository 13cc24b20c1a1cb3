package annotate

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// Cohen's κ on tables computed by hand.
func TestCohenKappaHandComputed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		table [nCat][nCat]int
		want  float64
	}{
		// 50 items, two categories: p_o = 35/50 = 0.7; margins 25/25 and
		// 30/20, p_e = (25·30 + 25·20)/2500 = 0.5; κ = 0.2/0.5 = 0.4.
		{"two categories", [nCat][nCat]int{{20, 5, 0}, {10, 15, 0}, {0, 0, 0}}, 0.4},
		// 30 items, three categories: agreement 23, margins 13/10/7 for both,
		// p_o − p_e = (690 − 318)/900, 1 − p_e = 582/900, κ = 372/582.
		{"three categories", [nCat][nCat]int{{10, 2, 1}, {1, 8, 1}, {2, 0, 5}}, 372.0 / 582.0},
		// Perfect agreement across categories: κ = 1.
		{"perfect", [nCat][nCat]int{{4, 0, 0}, {0, 3, 0}, {0, 0, 2}}, 1},
		// Every rating disagrees, balanced margins: p_o = 0, p_e = 0.5, κ = −1.
		{"opposite", [nCat][nCat]int{{0, 5, 0}, {5, 0, 0}, {0, 0, 0}}, -1},
	} {
		if got := CohenKappa(tc.table); !near(got, tc.want, 1e-12) {
			t.Errorf("%s: κ = %.6f, want %.6f", tc.name, got, tc.want)
		}
	}
	// Both raters always say "first": p_e = 1, κ undefined.
	if got := CohenKappa([nCat][nCat]int{{7, 0, 0}}); !math.IsNaN(got) {
		t.Errorf("constant ratings: κ = %v, want NaN", got)
	}
	if got := CohenKappa([nCat][nCat]int{}); !math.IsNaN(got) {
		t.Errorf("no items: κ = %v, want NaN", got)
	}
}

// Krippendorff's α (nominal) on a table computed by hand, with missing
// values and an unpairable unit.
func TestKrippendorffAlphaHandComputed(t *testing.T) {
	// Units as counts of (first, second, tie):
	//   u1 F F F    -> o_FF += 3·2/2 = 3
	//   u2 F S      -> o_FS += 1, o_SF += 1
	//   u3 S S T    -> o_SS += 2·1/2 = 1, o_ST += 1, o_TS += 1
	//   u4 T T      -> o_TT += 2
	//   u5 F        (one value: not pairable)
	//   u6 S S S F  -> o_SS += 3·2/3 = 2, o_SF += 1, o_FS += 1
	// o: FF 3, FS 2, SF 2, SS 3, ST 1, TS 1, TT 2; n_F 5, n_S 6, n_T 3, n 14.
	// Σ_{c≠k} o_ck = 6; Σ_{c≠k} n_c n_k = 2(30 + 15 + 18) = 126.
	// α = 1 − 13·6/126 = 48/126 = 8/21.
	units := [][nCat]int{{3, 0, 0}, {1, 1, 0}, {0, 2, 1}, {0, 0, 2}, {1, 0, 0}, {1, 3, 0}}
	if got, want := KrippendorffAlpha(units), 8.0/21.0; !near(got, want, 1e-12) {
		t.Errorf("α = %.6f, want %.6f (8/21)", got, want)
	}
	// Two coders, no missing values, the 50-item table of the κ test:
	// o_FF = 40, o_SS = 30, o_FS = o_SF = 15; n_F = 55, n_S = 45, n = 100.
	// α = 1 − 99·30/(2·55·45) = 1 − 2970/4950 = 0.4.
	var two [][nCat]int
	for k, n := range map[[nCat]int]int{{2, 0, 0}: 20, {1, 1, 0}: 15, {0, 2, 0}: 15} {
		for i := 0; i < n; i++ {
			two = append(two, k)
		}
	}
	if got := KrippendorffAlpha(two); !near(got, 0.4, 1e-12) {
		t.Errorf("two coders: α = %.6f, want 0.4", got)
	}
	if got := KrippendorffAlpha([][nCat]int{{2, 0, 0}, {3, 0, 0}}); !math.IsNaN(got) {
		t.Errorf("one category only: α = %v, want NaN", got)
	}
	if got := KrippendorffAlpha([][nCat]int{{1, 0, 0}, {0, 0, 1}}); !math.IsNaN(got) {
		t.Errorf("nothing pairable: α = %v, want NaN", got)
	}
}

// Wilson interval against a published value (8 of 10: 0.4902–0.9433).
func TestWilson(t *testing.T) {
	lo, hi := Wilson(8, 10)
	if !near(lo, 0.4902, 5e-5) || !near(hi, 0.9433, 5e-5) {
		t.Errorf("Wilson(8, 10) = [%.4f, %.4f], want [0.4902, 0.9433]", lo, hi)
	}
	lo, hi = Wilson(0, 20)
	if lo != 0 || !near(hi, 0.1611, 5e-5) {
		t.Errorf("Wilson(0, 20) = [%.4f, %.4f], want [0, 0.1611]", lo, hi)
	}
}

// The bootstrap interval brackets the estimate and narrows with more data.
func TestBootstrapInterval(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func(n int) [][2]category {
		var out [][2]category
		r := rand.New(rand.NewPCG(3, 4))
		for i := 0; i < n; i++ {
			a := category(r.IntN(2))
			b := a
			if r.Float64() < 0.2 {
				b = 1 - a
			}
			out = append(out, [2]category{a, b})
		}
		return out
	}
	width := func(n int) float64 {
		ps := mk(n)
		tab := func(idx []int) (t [nCat][nCat]int) {
			for _, i := range idx {
				t[ps[i][0]][ps[i][1]]++
			}
			return t
		}
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		k := CohenKappa(tab(all))
		lo, hi := bootstrap(n, 1000, rng, func(idx []int) float64 { return CohenKappa(tab(idx)) })
		if !(lo <= k && k <= hi) {
			t.Errorf("n=%d: κ %.3f outside its interval [%.3f, %.3f]", n, k, lo, hi)
		}
		return hi - lo
	}
	if w1, w2 := width(50), width(800); !(w2 < w1/2) {
		t.Errorf("interval width %.3f at n=50, %.3f at n=800: want it to shrink about 4x", w1, w2)
	}
}
