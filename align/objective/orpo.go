package objective

import (
	"fmt"
	"math"
)

// ORPO (Hong et al. 2024, "ORPO: Monolithic Preference Optimization without
// Reference Model"; TRL's ORPOTrainer): supervised fine-tuning and an odds
// ratio preference term in one loss, with no reference model. With ā and b̄
// the mean per-token log-probs of the chosen and rejected responses
// (log p(y|x) = ΣlogP/|y|, the paper's and TRL's average_log_prob), the odds
// of a response are p/(1−p) and
//
//	log-odds(y) = log p − log(1 − p)       (log1p(−exp(·)), computed stably)
//	z           = log-odds(y_w) − log-odds(y_l)
//	loss        = −ā − λ·log σ(z)
//
// −ā is the chosen response's mean token NLL. TRL logs z as
// log_odds_chosen, log σ(z) as log_odds_ratio, −ā as nll_loss and λ·ā, λ·b̄
// as rewards/chosen and rewards/rejected. (TRL averages the NLL over every
// chosen token of a batch; here it is each pair's mean, as RPO's term, so a
// pair's loss does not depend on what it is batched with.)
const ORPO = "orpo"

// DefaultORPOLambda is λ, the weight of the odds-ratio term: TRL's
// ORPOConfig beta and the paper's setting for its smaller models.
const DefaultORPOLambda = 0.1

// ORPOTerms are ORPO's own metrics of one pair (TRL's names in comments).
type ORPOTerms struct {
	NLL          float64 // nll_loss: −ā
	LogOddsRatio float64 // log_odds_ratio: log σ(z)
	LogOdds      float64 // log_odds_chosen: z
}

// Log1mExp is log(1 − eˣ) for x < 0, stable at both ends: log(−expm1(x))
// near 0 (where 1 − eˣ cancels) and log1p(−eˣ) below −ln 2 (Mächler 2012).
// It is −Inf at 0 and NaN above.
func Log1mExp(x float64) float64 {
	if x > -math.Ln2 {
		return math.Log(-math.Expm1(x))
	}
	return math.Log1p(-math.Exp(x))
}

// orpoMaxLogp is the largest mean log-prob ORPO's odds are taken at: a
// response the model is certain of (mean log-prob 0) has infinite odds, so
// the log-odds are those of −1e-7 and their gradient is 0 above it.
const orpoMaxLogp = -1e-7

// logOdds is log(p/(1−p)) of log p = x and its derivative 1/(1 − eˣ).
func logOdds(x float64) (v, d float64) {
	if x > orpoMaxLogp {
		return orpoMaxLogp - Log1mExp(orpoMaxLogp), 0
	}
	return x - Log1mExp(x), -1 / math.Expm1(x)
}

// ORPOLoss is one pair's ORPO loss at weight lambda, its gradient with
// respect to the log-prob sums PiW and PiL (RefW and RefL are not read),
// the rewards λ·ā and λ·b̄, and ORPO's own terms.
func ORPOLoss(lambda float64, p PairLogps) (PairLoss, ORPOTerms, error) {
	if !(lambda > 0) || math.IsInf(lambda, 0) {
		return PairLoss{}, ORPOTerms{}, fmt.Errorf("orpo λ must be a positive number (got %g)", lambda)
	}
	if p.NW <= 0 || p.NL <= 0 {
		return PairLoss{}, ORPOTerms{}, fmt.Errorf("orpo needs response token counts")
	}
	a, b := p.PiW/float64(p.NW), p.PiL/float64(p.NL)
	ow, dw := logOdds(a)
	ol, dl := logOdds(b)
	z := ow - ol
	var out PairLoss
	t := ORPOTerms{NLL: -a, LogOddsRatio: LogSigmoid(z), LogOdds: z}
	out.Loss = t.NLL - lambda*t.LogOddsRatio
	dz := -lambda * Sigmoid(-z) // d/dz −λ·log σ(z)
	out.DPiW = (-1 + dz*dw) / float64(p.NW)
	out.DPiL = -dz * dl / float64(p.NL)
	out.RewardW, out.RewardL = lambda*a, lambda*b
	out.Margin = out.RewardW - out.RewardL
	out.Correct = out.RewardW > out.RewardL
	return out, t, nil
}
