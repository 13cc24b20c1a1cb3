package annotate

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
)

// Num is a statistic that may be undefined (NaN): JSON null then.
type Num float64

// MarshalJSON writes null for NaN and infinities.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(math.Round(f*1e6) / 1e6)
}

// String formats n with three decimals, or "n/a".
func (n Num) String() string {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(f, 'f', 3, 64)
}

// Estimate is a statistic with a 95% interval.
type Estimate struct {
	Value Num `json:"value"`
	Lo    Num `json:"lo"`
	Hi    Num `json:"hi"`
}

func nan() Num { return Num(math.NaN()) }

// nCat is the number of label categories (first, second, tie).
const nCat = 3

// CohenKappa is Cohen's κ of two raters over items both rated, from the
// table t[c][k] = items the first rater put in c and the second in k:
// κ = (p_o − p_e) / (1 − p_e). NaN when there are no items or p_e = 1.
func CohenKappa(t [nCat][nCat]int) float64 {
	n := 0
	var row, col [nCat]int
	agree := 0
	for c := 0; c < nCat; c++ {
		for k := 0; k < nCat; k++ {
			n += t[c][k]
			row[c] += t[c][k]
			col[k] += t[c][k]
		}
		agree += t[c][c]
	}
	if n == 0 {
		return math.NaN()
	}
	po := float64(agree) / float64(n)
	pe := 0.0
	for c := 0; c < nCat; c++ {
		pe += float64(row[c]) * float64(col[c]) / (float64(n) * float64(n))
	}
	if pe >= 1 {
		return math.NaN()
	}
	return (po - pe) / (1 - pe)
}

// KrippendorffAlpha is Krippendorff's α for nominal data. Each unit is the
// count of values in each category (any number of raters, missing values
// simply absent); units with fewer than two values are not pairable and
// are left out. α = 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k, with o the
// coincidence matrix and n_c its margins. NaN when fewer than two pairable
// values or a single category.
func KrippendorffAlpha(units [][nCat]int) float64 {
	var o [nCat][nCat]float64
	for _, u := range units {
		m := 0
		for _, x := range u {
			m += x
		}
		if m < 2 {
			continue
		}
		for c := 0; c < nCat; c++ {
			for k := 0; k < nCat; k++ {
				pairs := u[c] * u[k]
				if c == k {
					pairs = u[c] * (u[c] - 1)
				}
				o[c][k] += float64(pairs) / float64(m-1)
			}
		}
	}
	var nc [nCat]float64
	n := 0.0
	for c := 0; c < nCat; c++ {
		for k := 0; k < nCat; k++ {
			nc[c] += o[c][k]
		}
		n += nc[c]
	}
	if n < 2 {
		return math.NaN()
	}
	do, de := 0.0, 0.0
	for c := 0; c < nCat; c++ {
		for k := 0; k < nCat; k++ {
			if c != k {
				do += o[c][k]
				de += nc[c] * nc[k]
			}
		}
	}
	if de == 0 {
		return math.NaN()
	}
	return 1 - (n-1)*do/de
}

// Wilson is the Wilson score interval (95%) of k successes in n trials.
func Wilson(k, n int) (lo, hi float64) {
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	const z = 1.959963984540054
	p := float64(k) / float64(n)
	nn := float64(n)
	den := 1 + z*z/nn
	center := (p + z*z/(2*nn)) / den
	half := z / den * math.Sqrt(p*(1-p)/nn+z*z/(4*nn*nn))
	return math.Max(0, center-half), math.Min(1, center+half)
}

// bootstrap resamples n units with replacement b times, computes stat on
// each resample (given as unit indexes) and returns the 2.5th and 97.5th
// percentiles of the defined values (NaN when fewer than half are).
func bootstrap(n, b int, rng *rand.Rand, stat func(idx []int) float64) (lo, hi float64) {
	if n == 0 || b <= 0 {
		return math.NaN(), math.NaN()
	}
	idx := make([]int, n)
	vals := make([]float64, 0, b)
	for r := 0; r < b; r++ {
		for i := range idx {
			idx[i] = rng.IntN(n)
		}
		if v := stat(idx); !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	if len(vals) < b/2 || len(vals) == 0 {
		return math.NaN(), math.NaN()
	}
	sort.Float64s(vals)
	q := func(p float64) float64 {
		x := p * float64(len(vals)-1)
		i := int(x)
		if i+1 >= len(vals) {
			return vals[len(vals)-1]
		}
		return vals[i] + (x-float64(i))*(vals[i+1]-vals[i])
	}
	return q(0.025), q(0.975)
}
