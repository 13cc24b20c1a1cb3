package rl

import (
	"math"
	"math/rand/v2"

	"github.com/align-dev/align/align/run"
)

// lossStats sums one update's per-token quantities.
type lossStats struct {
	tokens, seqs          int
	policyLoss, clipped   float64
	approxKL, k3, entropy float64
	valueLoss, vclipped   float64
	vtokens               int
	gradNorm, vgradNorm   float64
	steps                 int
}

// valueCot is the clipped value loss of a part, divided by norm, and its
// derivative with respect to each head value (Outputs order).
func valueCot(cfg *Config, part []*Seq, heads []float32, norm float64, st *lossStats) []float32 {
	cot := make([]float32, len(heads))
	j := 0
	for _, s := range part {
		for t := range s.Resp {
			l, d, clipped := ValueLoss(float64(heads[j]), s.Val[t], s.Ret[t], cfg.ClipValue)
			cot[j] = float32(d / norm)
			st.valueLoss += l / norm
			if clipped {
				st.vclipped++
			}
			st.vtokens++
			j++
		}
	}
	return cot
}

// tokensOf counts response tokens.
func tokensOf(seqs []*Seq) int {
	n := 0
	for _, s := range seqs {
		n += len(s.Resp)
	}
	return n
}

// update runs cfg.PPOEpochs passes over seqs, each cut into cfg.MiniBatches
// optimiser steps of obj's loss in an order that is a pure function of
// (seed, step, pass). With obj.oldFromUpdate, Old is not computed yet: the
// first pass's forward (before any update, so exactly the sampling policy)
// provides it.
func (e *worker) update(cfg *Config, obj rolloutObjective, seqs []*Seq, step int, lr float64) (lossStats, error) {
	var st lossStats
	if len(seqs) == 0 {
		return st, nil
	}
	reuseOld := obj.oldFromUpdate()
	for pass := 0; pass < cfg.PPOEpochs; pass++ {
		rng := rand.New(rand.NewPCG(cfg.Seed^0x7070_6f5f_6d62, uint64(step)<<16|uint64(pass)))
		perm := rng.Perm(len(seqs))
		nmb := min(cfg.MiniBatches, len(seqs))
		for mb := 0; mb < nmb; mb++ {
			var part []*Seq
			for _, i := range perm[mb*len(seqs)/nmb : (mb+1)*len(seqs)/nmb] {
				part = append(part, seqs[i])
			}
			norm := obj.norm(part)
			policy := e.policy
			gn, err := run.Optimiser{WeightDecay: cfg.WeightDecay, MaxGradNorm: cfg.MaxGradNorm}.Step(policy, lr, func() error {
				for i := 0; i < len(part); i += e.chunk {
					ch := part[i:min(len(part), i+e.chunk)]
					out, err := policy.ForwardGrad(batch(ch, false))
					if err != nil {
						return err
					}
					if reuseOld && pass == 0 {
						if err := split(out.Logps, ch, func(s *Seq) *[]float64 { return &s.Old }); err != nil {
							return err
						}
					}
					if err := policy.Backward(obj.loss(ch, out.Logps, norm, &st), nil); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return st, err
			}
			st.gradNorm += gn
			if e.value != nil {
				value := e.value
				vnorm := float64(max(1, tokensOf(part)))
				vg, err := run.Optimiser{MaxGradNorm: cfg.MaxGradNorm}.Step(value, cfg.valueLR(), func() error {
					for i := 0; i < len(part); i += e.chunk {
						ch := part[i:min(len(part), i+e.chunk)]
						out, err := value.ForwardGrad(batch(ch, true))
						if err != nil {
							return err
						}
						if err := value.Backward(nil, valueCot(cfg, ch, out.Heads, vnorm, &st)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					return st, err
				}
				st.vgradNorm += vg
			}
			st.steps++
		}
	}
	return st, nil
}

// metrics are an update's means, keyed as TRL logs them where it has a name.
func (st lossStats) metrics(m map[string]float64) {
	if st.tokens == 0 {
		return
	}
	n := float64(st.tokens)
	m["clip_ratio"] = st.clipped / n
	m["approx_kl"] = st.approxKL / n
	m["policy_loss"] = st.policyLoss / float64(max(1, st.steps))
	m["grad_norm"] = st.gradNorm / float64(max(1, st.steps))
	if st.vtokens > 0 { // a value set (PPO)
		m["value_loss"] = st.valueLoss / float64(max(1, st.steps))
		m["value_clip_ratio"] = st.vclipped / float64(st.vtokens)
		m["value_grad_norm"] = st.vgradNorm / float64(max(1, st.steps))
	}
}

// seqKL is Σ_t (old − ref) of a sequence: a sample of KL(π ‖ π_ref) over
// the completion (the k1 estimator, summed as TRL's PPO logs it).
func seqKL(s *Seq) float64 {
	var k float64
	for t := range s.Old {
		k += s.Old[t] - s.Ref[t]
	}
	return k
}

// tokenK3 is the mean per-token k3 of seqs at the sampling policy.
func tokenK3(seqs []*Seq) float64 {
	var k float64
	n := 0
	for _, s := range seqs {
		for t := range s.Old {
			v, _ := K3(s.Old[t], s.Ref[t])
			k += v
			n++
		}
	}
	return k / math.Max(1, float64(n))
}
