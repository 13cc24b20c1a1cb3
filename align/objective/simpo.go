package objective

import (
	"fmt"
	"math"
)

// SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a
// Reference-Free Reward"; TRL's CPOTrainer with loss_type="simpo"): the
// implicit reward of a response is β times its mean per-token log-prob,
// and the Bradley–Terry loss asks the chosen reward to exceed the rejected
// one by a target margin γ, with no reference model:
//
//	r(y) = β/|y| · log π(y|x)
//	z    = r(y_w) − r(y_l) − γ
//	loss = −(1−ε)·log σ(z) − ε·log σ(−z)
//
// ε is label smoothing (0: the paper's loss). γ is in reward units, as TRL's
// simpo_gamma (the SimPO repository's gamma_beta_ratio is γ/β). TRL logs
// r(y_w), r(y_l) as rewards/chosen and rewards/rejected.
const SimPO = "simpo"

// SimPO's defaults: β 2, the low end of the paper's range for its models
// (2.0 to 2.5; also torchtune's default; TRL's CPOConfig default 0.1 is
// DPO's, too small for length-normalised rewards), and γ 0.5, TRL's
// simpo_gamma and torchtune's default (γ/β = 0.25; the paper searched γ/β
// in 0 to 1 and found 0.5 a good start).
const (
	DefaultSimPOBeta  = 2.0
	DefaultSimPOGamma = 0.5
)

// SimPOLoss is one pair's SimPO loss with β, margin γ and label smoothing
// eps, its gradient with respect to PiW and PiL (RefW and RefL are not
// read) and the rewards.
func SimPOLoss(beta, gamma, eps float64, p PairLogps) (PairLoss, error) {
	if !(beta > 0) || math.IsInf(beta, 0) {
		return PairLoss{}, fmt.Errorf("simpo β must be a positive number (got %g)", beta)
	}
	if p.NW <= 0 || p.NL <= 0 {
		return PairLoss{}, fmt.Errorf("simpo needs response token counts")
	}
	var out PairLoss
	out.RewardW = beta * p.PiW / float64(p.NW)
	out.RewardL = beta * p.PiL / float64(p.NL)
	out.Margin = out.RewardW - out.RewardL
	out.Correct = out.RewardW > out.RewardL
	z := out.Margin - gamma
	out.Loss = -(1-eps)*LogSigmoid(z) - eps*LogSigmoid(-z)
	dz := -(1-eps)*Sigmoid(-z) + eps*Sigmoid(z)
	out.DPiW = dz * beta / float64(p.NW)
	out.DPiL = -dz * beta / float64(p.NL)
	return out, nil
}
