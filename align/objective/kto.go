package objective

import (
	"fmt"
	"math"
)

// KTO is the Kahneman–Tversky objective (Ethayarajh et al. 2024; TRL's
// KTOTrainer, loss_type "kto").
const KTO = "kto"

// KTOLoss is one unpaired example's KTO loss, its derivative with respect
// to the policy's log-prob sum of the completion, and its implicit reward
// β(π − ρ).
type KTOLoss struct {
	Loss, DPi, Reward float64
}

// KTOExample computes one example's loss against the reference point z0
// (KTOReference, detached: no derivative flows into it) with weights wD
// (desirable) and wU (undesirable):
//
//	r = π − ρ (the log-ratio of the completion)
//	desirable:   wD·(1 − σ(β(r − z0)))
//	undesirable: wU·(1 − σ(β(z0 − r)))
func KTOExample(beta, z0, pi, ref float64, desirable bool, wD, wU float64) (KTOLoss, error) {
	if beta <= 0 || math.IsNaN(beta) {
		return KTOLoss{}, fmt.Errorf("beta must be positive (got %g)", beta)
	}
	r := pi - ref
	out := KTOLoss{Reward: beta * r}
	if desirable {
		s := Sigmoid(beta * (r - z0))
		out.Loss = wD * (1 - s)
		out.DPi = -wD * beta * s * (1 - s)
	} else {
		s := Sigmoid(beta * (z0 - r))
		out.Loss = wU * (1 - s)
		out.DPi = wU * beta * s * (1 - s)
	}
	return out, nil
}

// KTOReference is KTO's reference point z0: the mean log-ratio π − ρ of
// mismatched prompt/completion sequences (an estimate of KL(π‖π_ref)),
// clamped at 0. Both slices have one entry per mismatched sequence; an
// empty batch gives 0.
func KTOReference(piKL, refKL []float64) float64 {
	if len(piKL) == 0 {
		return 0
	}
	var s float64
	for i := range piKL {
		s += piKL[i] - refKL[i]
	}
	return math.Max(s/float64(len(piKL)), 0)
}

// KTOWeightAdvice is the paper's guidance on λ_D and λ_U for nD desirable
// and nU undesirable examples: λ_D·nD / (λ_U·nU) should lie in [1, 4/3].
// ok is true when it does (or one kind is absent); otherwise the ranges
// of λ_D (with λ_U kept) and of λ_U (with λ_D kept) that bring it there
// (TRL's warning gives the same).
func KTOWeightAdvice(nD, nU int, wD, wU float64) (ratio float64, ok bool, dLo, dHi, uLo, uHi float64) {
	if nD == 0 || nU == 0 {
		return 0, true, 0, 0, 0, 0
	}
	ratio = wD * float64(nD) / (wU * float64(nU))
	ok = ratio >= 1 && ratio <= 4.0/3
	dLo = wU * float64(nU) / float64(nD)
	dHi = dLo * 4 / 3
	uHi = wD * float64(nD) / float64(nU)
	uLo = uHi * 3 / 4
	return ratio, ok, dLo, dHi, uLo, uHi
}

// KTOMetrics accumulate KTO examples in TRL's names.
type KTOMetrics struct {
	KL                         float64 // z0 of the last reference point
	Loss                       float64 // sum over examples
	NChosen, NRejected         int
	RewardsChosen, RewardsRej  float64 // sums
	LogpsChosen, LogpsRejected float64 // sums
}

// Add accumulates one example.
func (m *KTOMetrics) Add(l KTOLoss, pi float64, desirable bool) {
	m.Loss += l.Loss
	if desirable {
		m.NChosen++
		m.RewardsChosen += l.Reward
		m.LogpsChosen += pi
	} else {
		m.NRejected++
		m.RewardsRej += l.Reward
		m.LogpsRejected += pi
	}
}

// Map is TRL's KTO log: loss (the mean over examples), kl, the per-split
// sums and counts TRL stores (rewards/chosen_sum, logps/chosen_sum,
// count/chosen, and the same for rejected) and their means
// (rewards/chosen, logps/chosen, ...; rewards/margins = mean chosen
// reward − mean rejected reward when both are present).
func (m KTOMetrics) Map() map[string]float64 {
	n := m.NChosen + m.NRejected
	if n == 0 {
		return map[string]float64{}
	}
	out := map[string]float64{"loss": m.Loss / float64(n), "kl": m.KL,
		"count/chosen": float64(m.NChosen), "count/rejected": float64(m.NRejected),
		"rewards/chosen_sum": m.RewardsChosen, "logps/chosen_sum": m.LogpsChosen,
		"rewards/rejected_sum": m.RewardsRej, "logps/rejected_sum": m.LogpsRejected}
	if m.NChosen > 0 {
		out["rewards/chosen"] = m.RewardsChosen / float64(m.NChosen)
		out["logps/chosen"] = m.LogpsChosen / float64(m.NChosen)
	}
	if m.NRejected > 0 {
		out["rewards/rejected"] = m.RewardsRej / float64(m.NRejected)
		out["logps/rejected"] = m.LogpsRejected / float64(m.NRejected)
	}
	if m.NChosen > 0 && m.NRejected > 0 {
		out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
	}
	return out
}
