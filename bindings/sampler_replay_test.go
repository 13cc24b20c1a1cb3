package bindings

import (
	"math"
	"sort"
	"testing"
)

// A replay of the sampler chain align builds (native/src/session.cpp
// sampler_chain: unknown-token ban, then greedy, or top-k → top-p → temp →
// dist), used to tell a sampled token that kernel rounding could flip from
// one that no rounding could. Batched and single decoding take different
// SIMD kernels on some CPUs (AVX-512 against AVX2), so their logits differ
// in the last bits; two runs may part only at a step whose outcome sits
// within rounding of a boundary: a near tie for greedy; for sampling, the
// uniform draw next to a cumulative-probability boundary, the top-p
// cutoff next to p, or the k-th and (k+1)-th logits next to each other.

// mt19937 is the 32-bit Mersenne Twister of C++'s std::mt19937, which
// llama.cpp's dist sampler draws from.
type mt19937 struct {
	mt  [624]uint32
	idx int
}

func newMT19937(seed uint32) *mt19937 {
	r := &mt19937{idx: 624}
	r.mt[0] = seed
	for i := 1; i < 624; i++ {
		r.mt[i] = 1812433253*(r.mt[i-1]^(r.mt[i-1]>>30)) + uint32(i)
	}
	return r
}

func (r *mt19937) next() uint32 {
	if r.idx >= 624 {
		for i := 0; i < 624; i++ {
			y := (r.mt[i] & 0x80000000) | (r.mt[(i+1)%624] & 0x7fffffff)
			v := r.mt[(i+397)%624] ^ (y >> 1)
			if y&1 != 0 {
				v ^= 0x9908b0df
			}
			r.mt[i] = v
		}
		r.idx = 0
	}
	y := r.mt[r.idx]
	r.idx++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// uniform is libstdc++'s std::uniform_real_distribution<double>(0, 1) over
// mt19937: generate_canonical<double, 53> takes two 32-bit draws.
func (r *mt19937) uniform() float64 {
	lo := float64(r.next())
	hi := float64(r.next())
	v := (lo + hi*4294967296.0) / 18446744073709551616.0
	if v >= 1 {
		v = math.Nextafter(1, 0)
	}
	return v
}

func TestMT19937MatchesCpp(t *testing.T) {
	// the C++ standard fixes the 10000th output of a default-seeded
	// std::mt19937 (seed 5489): 4123659995
	r := newMT19937(5489)
	var v uint32
	for i := 0; i < 10000; i++ {
		v = r.next()
	}
	if v != 4123659995 {
		t.Fatalf("10000th output %d, want 4123659995", v)
	}
}

// replaySampler follows one sequence's sampler chain step by step.
type replaySampler struct {
	p   SamplerParams
	unk int32
	rng *mt19937
	eps float64 // logit perturbation (kernel rounding) a step must withstand
}

func newReplaySampler(p SamplerParams, seed uint32, unk int32, eps float64) *replaySampler {
	return &replaySampler{p: p, unk: unk, rng: newMT19937(seed), eps: eps}
}

// step returns the token the chain picks from logits and whether a change of
// every logit by at most eps could have picked another one (or changed how
// many draws the chain takes, which desynchronises every later step).
func (r *replaySampler) step(logits []float32) (tok int32, fragile bool) {
	type cand struct {
		id    int32
		logit float32
	}
	c := make([]cand, 0, len(logits))
	for i, l := range logits {
		if int32(i) == r.unk {
			continue // banned: logit bias -inf
		}
		c = append(c, cand{int32(i), l})
	}
	sort.SliceStable(c, func(a, b int) bool { return c[a].logit > c[b].logit })
	gap := 2 * r.eps // two logits this close may swap places
	if r.p.Temperature <= 0 {
		return c[0].id, len(c) > 1 && float64(c[0].logit-c[1].logit) < gap
	}
	// the k-th and (k+1)-th logits swapping changes which token sits last
	// in the kept set; its effect on the normalisation is within eta below
	kSwap := -1
	if k := int(r.p.TopK); k > 0 && k < len(c) {
		if float64(c[k-1].logit-c[k].logit) < gap {
			kSwap = k - 1
		}
		c = c[:k]
	}
	// a logit moved by eps moves a probability by a factor within e^{±2eps}
	// after normalisation, so a cumulative sum by less than 2eps·e^{2eps}
	eta := 2 * r.eps * math.Exp(2*r.eps)
	if r.p.TopP < 1 {
		// llama_sampler_top_p: softmax in float, keep the shortest prefix
		// whose running float sum reaches p
		maxl := c[0].logit
		ps := make([]float32, len(c))
		var sum float32
		for i := range c {
			ps[i] = float32(math.Exp(float64(c[i].logit - maxl)))
			sum += ps[i]
		}
		var cum float32
		last := len(c)
		for i := range c {
			prev := cum
			cum += ps[i] / sum
			if cum >= r.p.TopP {
				last = i + 1
				if float64(cum-r.p.TopP) < eta || (i > 0 && float64(r.p.TopP-prev) < eta) {
					fragile = true
				}
				break
			}
		}
		c = c[:last]
	}
	if len(c) == 1 {
		return c[0].id, fragile || kSwap == 0 // the dist sampler draws nothing
	}
	// llama_sampler_temp, then llama_sampler_dist: expf of the shifted
	// logits, summed in double, the first index whose running sum reaches
	// sum·u
	maxl := c[0].logit / r.p.Temperature
	ps := make([]float64, len(c))
	var sum float64
	for i := range c {
		ps[i] = float64(float32(math.Exp(float64(c[i].logit/r.p.Temperature - maxl))))
		sum += ps[i]
	}
	u := r.rng.uniform()
	target := sum * u
	var run float64
	sel := len(c) - 1
	for i := range c {
		prev := run
		run += ps[i]
		if run >= target {
			sel = i
			if (run-target)/sum < eta || (i > 0 && (target-prev)/sum < eta) {
				fragile = true
			}
			break
		}
	}
	return c[sel].id, fragile || sel == kSwap
}
