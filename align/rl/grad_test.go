package rl

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/align-dev/align/bindings"
)

// Composite gradient checks on an F32 base (exact backward): forward →
// this package's loss → per-token (or head) cotangents → the native
// backward, against central differences of the same loss on parameters of
// every tensor of the set (DESIGN §4.6: finite differences are meaningful
// only on F32 weights).

func gradTrainer(t *testing.T) *bindings.Trainer {
	t.Helper()
	tr, err := bindings.NewTrainerFromFile(fixture(t, "f32"), bindings.TrainerOptions{Threads: 2, Rank: 2, Alpha: 4,
		Targets: bindings.TargetQ | bindings.TargetV | bindings.TargetDown, Seed: 3, ExactBackward: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func setRandom(t *testing.T, tr *bindings.Trainer, set int, seed uint64, scale float64) []float32 {
	t.Helper()
	si, err := tr.Set(set).Info()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	p := make([]float32, si.NParams)
	for i := range p {
		p[i] = float32(rng.NormFloat64() * scale)
	}
	if err := tr.Set(set).SetState(p, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

// gradSeqs are two prompt + response sequences of the fixture's vocabulary.
func gradSeqs() []*Seq {
	return []*Seq{
		{Tokens: []int32{1, 40, 51, 62, 73}, Resp: []int32{84, 95, 106, 117, 128, 139}},
		{Tokens: []int32{1, 44, 55}, Resp: []int32{66, 77, 88, 99, 2}},
	}
}

// fdCheck compares grad (the set's accumulated gradient) with central
// differences of loss on two random elements of every parameter tensor.
func fdCheck(t *testing.T, tr *bindings.Trainer, set int, params, grad []float32, loss func() float64, h float32) {
	t.Helper()
	table, err := tr.Set(set).Params()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	var num, den, worst float64
	for _, row := range table {
		n := int(row.Ne0 * row.Ne1)
		for k := 0; k < 2; k++ {
			i := int(row.Offset) + rng.IntN(n)
			orig := params[i]
			params[i] = orig + h
			tr.Set(set).SetState(params, nil, nil, 0)
			lp := loss()
			params[i] = orig - h
			tr.Set(set).SetState(params, nil, nil, 0)
			lm := loss()
			params[i] = orig
			fd := (lp - lm) / (2 * float64(h))
			an := float64(grad[i])
			rel := math.Abs(fd-an) / math.Max(math.Max(math.Abs(fd), math.Abs(an)), 1e-3)
			worst = math.Max(worst, rel)
			num += (fd - an) * (fd - an)
			den += fd * fd
			if rel > 5e-2 {
				t.Errorf("%s[%d]: analytic %.6g, finite difference %.6g (rel %.2g)", row.Name, i-int(row.Offset), an, fd, rel)
			}
		}
	}
	tr.Set(set).SetState(params, nil, nil, 0)
	t.Logf("gradient NMSE over %d elements of %d tensors %.2e, worst relative error %.2e", 2*len(table), len(table), num/den, worst)
	if !(num/den < 1e-3) || den == 0 {
		t.Errorf("gradient NMSE %.3g (Σfd² %.3g) against finite differences", num/den, den)
	}
}

// policySetup gives each response token of gradSeqs an old log-prob at a
// chosen offset from the current one: offsets of ±0.05 stay inside the
// trust region, ±0.6 are far outside it (both branches of the clip), and
// an advantage of either sign.
func policySetup(t *testing.T, tr *bindings.Trainer, cfg *Config) []*Seq {
	t.Helper()
	seqs := gradSeqs()
	out, err := tr.Set(0).Forward(batch(seqs, false), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := split(out.Logps, seqs, func(s *Seq) *[]float64 { return &s.Old }); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(41, 42))
	offsets := []float64{0.05, -0.6, -0.05, 0.6}
	for i, s := range seqs {
		s.Ref = make([]float64, len(s.Old))
		s.Adv = make([]float64, len(s.Old))
		for t := range s.Old {
			s.Old[t] += offsets[(t+i)%4]
			s.Ref[t] = s.Old[t] + rng.NormFloat64()*0.5
			s.Adv[t] = rng.NormFloat64()
		}
		if cfg.Method == GRPO {
			s.Adv = []float64{[]float64{1.3, -0.7}[i]}
		}
	}
	return seqs
}

func policyGradCheck(t *testing.T, cfg *Config) {
	tr := gradTrainer(t)
	params := setRandom(t, tr, 0, 11, 0.05)
	seqs := policySetup(t, tr, cfg)
	b := batch(seqs, false)
	norm := stepNorm(cfg, seqs)
	var st lossStats
	out, err := tr.Set(0).ForwardGrad(b)
	if err != nil {
		t.Fatal(err)
	}
	cot := policyCot(cfg, seqs, out.Logps, norm, &st)
	zero := 0
	for _, c := range cot {
		if c == 0 {
			zero++
		}
	}
	// both branches are exercised: clipped tokens (no gradient) and
	// unclipped ones
	if st.clipped == 0 || int(st.clipped) == st.tokens {
		t.Fatalf("%g of %d tokens clipped: want both branches", st.clipped, st.tokens)
	}
	if cfg.Beta == 0 && zero != int(st.clipped) {
		t.Fatalf("%d zero cotangents for %g clipped tokens", zero, st.clipped)
	}
	t.Logf("%s: %g of %d tokens on the clipped branch", cfg.Method, st.clipped, st.tokens)
	if err := tr.Set(0).Backward(cot, nil); err != nil {
		t.Fatal(err)
	}
	g, err := tr.Set(0).GetState()
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		out, err := tr.Set(0).Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		var st lossStats
		policyCot(cfg, seqs, out.Logps, norm, &st)
		return st.policyLoss
	}
	fdCheck(t, tr, 0, params, g.Grads, loss, 1e-2)
}

// The PPO clipped surrogate with per-token advantages, both branches.
func TestGradPPOSurrogate(t *testing.T) {
	cfg := Defaults(PPO)
	policyGradCheck(t, &cfg)
}

// GRPO's surrogate with sequence advantages plus β·k3 to the reference.
func TestGradGRPOSurrogateK3(t *testing.T) {
	cfg := Defaults(GRPO)
	cfg.Beta = 0.5
	policyGradCheck(t, &cfg)
}

// The k3 term alone (all tokens inside the trust region with zero
// advantage: only β·k3 has a gradient).
func TestGradK3(t *testing.T) {
	cfg := Defaults(GRPO)
	cfg.Beta = 1
	tr := gradTrainer(t)
	params := setRandom(t, tr, 0, 12, 0.05)
	seqs := gradSeqs()
	b := batch(seqs, false)
	out, err := tr.Set(0).ForwardGrad(b)
	if err != nil {
		t.Fatal(err)
	}
	split(out.Logps, seqs, func(s *Seq) *[]float64 { return &s.Old })
	rng := rand.New(rand.NewPCG(43, 44))
	for _, s := range seqs {
		s.Adv = []float64{0}
		s.Ref = make([]float64, len(s.Old))
		for t := range s.Old {
			s.Ref[t] = s.Old[t] + rng.NormFloat64()
		}
	}
	norm := stepNorm(&cfg, seqs)
	var st lossStats
	cot := policyCot(&cfg, seqs, out.Logps, norm, &st)
	if st.k3 <= 0 {
		t.Fatalf("k3 sum %g, want > 0", st.k3)
	}
	if err := tr.Set(0).Backward(cot, nil); err != nil {
		t.Fatal(err)
	}
	g, _ := tr.Set(0).GetState()
	loss := func() float64 {
		out, err := tr.Set(0).Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		var st lossStats
		policyCot(&cfg, seqs, out.Logps, norm, &st)
		return st.policyLoss
	}
	fdCheck(t, tr, 0, params, g.Grads, loss, 1e-2)
}

// Per-token seeds: a random cotangent per token through Backward (the
// seam PPO and GRPO use), checked on the loss Σ c_t log p_t.
func TestGradTokenSeeds(t *testing.T) {
	tr := gradTrainer(t)
	params := setRandom(t, tr, 0, 13, 0.05)
	b := batch(gradSeqs(), false)
	rng := rand.New(rand.NewPCG(45, 46))
	cot := make([]float32, b.NScored())
	for i := range cot {
		cot[i] = float32(rng.NormFloat64())
	}
	if _, err := tr.Set(0).ForwardGrad(b); err != nil {
		t.Fatal(err)
	}
	if err := tr.Set(0).Backward(cot, nil); err != nil {
		t.Fatal(err)
	}
	g, _ := tr.Set(0).GetState()
	loss := func() float64 {
		out, err := tr.Set(0).Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		var l float64
		for i, lp := range out.Logps {
			l += float64(cot[i]) * float64(lp)
		}
		return l
	}
	fdCheck(t, tr, 0, params, g.Grads, loss, 1e-2)
}

// The clipped value loss through the value head (a set with its own LoRA
// and the scalar head), with values inside and outside the clip range.
func TestGradValueLoss(t *testing.T) {
	cfg := Defaults(PPO)
	tr := gradTrainer(t)
	set, err := tr.AddSet(bindings.SetOptions{Name: "value", Rank: 2, Alpha: 4, Targets: bindings.TargetQ | bindings.TargetV, Seed: 5,
		Heads: []bindings.HeadSpec{{Name: "value", Dim: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	params := setRandom(t, tr, set.ID(), 14, 0.05)
	seqs := gradSeqs()
	bv := batch(seqs, true)
	out, err := set.ForwardGrad(bv)
	if err != nil {
		t.Fatal(err)
	}
	if err := split(out.Heads, seqs, func(s *Seq) *[]float64 { return &s.Val }); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(47, 48))
	offsets := []float64{0.05, -0.5, -0.05, 0.5} // old value relative to the current one
	for i, s := range seqs {
		s.Ret = make([]float64, len(s.Val))
		for t := range s.Val {
			s.Val[t] += offsets[(t+i)%4]
			s.Ret[t] = s.Val[t] + rng.NormFloat64()
		}
	}
	norm := float64(tokensOf(seqs))
	var st lossStats
	hc := valueCot(&cfg, seqs, out.Heads, norm, &st)
	if st.vclipped == 0 || int(st.vclipped) == st.vtokens {
		t.Fatalf("%g of %d values clipped: want both branches", st.vclipped, st.vtokens)
	}
	t.Logf("%g of %d values on the clipped branch", st.vclipped, st.vtokens)
	if err := set.Backward(nil, hc); err != nil {
		t.Fatal(err)
	}
	g, _ := set.GetState()
	loss := func() float64 {
		out, err := set.Forward(bv, 1)
		if err != nil {
			t.Fatal(err)
		}
		var st lossStats
		valueCot(&cfg, seqs, out.Heads, norm, &st)
		return st.valueLoss
	}
	fdCheck(t, tr, set.ID(), params, g.Grads, loss, 1e-2)
}

// policyCot and stepNorm are the loss and divisor of cfg's rollout
// objective, as update runs them.
func policyCot(cfg *Config, part []*Seq, logps []float32, norm float64, st *lossStats) []float32 {
	return rolloutObjectives[cfg.Method](cfg, &cfg.KLCoef).loss(part, logps, norm, st)
}

func stepNorm(cfg *Config, part []*Seq) float64 {
	return rolloutObjectives[cfg.Method](cfg, &cfg.KLCoef).norm(part)
}
