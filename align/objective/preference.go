// Package objective is the math of every training method, free of the
// engine and of cgo (make test runs it with CGO_ENABLED=0): the preference
// losses (DPO, cDPO, IPO, hinge, RPO's NLL term), the reward model's
// Bradley–Terry loss, KTO's unpaired loss and reference point, PPO's and GRPO's surrogate, value loss, GAE,
// advantages and KL estimators, the learning-rate schedule, AdamW's
// constants and the metrics TRL logs. Each loss returns its value and its
// derivative with respect to what the engine produced (log-prob sums,
// token log-probs, head values); align/train and align/rl turn those into
// the engine's cotangents. methods.go is the registry of every method:
// what is method-specific beyond its loss (kind, batch layout, reference
// pass, early-stopping score, help), read by align/train, align/rl and the
// command line.
package objective

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// The preference methods of PreferenceLoss.
const (
	DPO   = "dpo"
	IPO   = "ipo"
	CDPO  = "cdpo"
	Hinge = "hinge"
)

// DefaultBetas are the per-objective β of weighted DPO.
var DefaultBetas = map[string]float64{"safety": 0.05, "tone": 0.1, "escalation": 0.1, "accuracy": 0.3}

// DefaultBeta applies to objectives the table does not name.
const DefaultBeta = 0.1

// PairLogps are the summed response log-probs of one pair under the policy
// (Pi) and the frozen reference (Ref), with response token counts.
type PairLogps struct {
	PiW, PiL, RefW, RefL float64
	NW, NL               int
}

// PairLoss is one pair's loss, its gradient with respect to PiW and PiL,
// and the implicit rewards β(π − ρ).
type PairLoss struct {
	Loss             float64
	DPiW, DPiL       float64
	RewardW, RewardL float64
	Margin           float64
	Correct          bool
}

// LogSigmoid is log σ(x), stable for large |x|.
func LogSigmoid(x float64) float64 {
	if x >= 0 {
		return -math.Log1p(math.Exp(-x))
	}
	return x - math.Log1p(math.Exp(x))
}

func Sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// PreferenceLoss computes a pair's loss for method with β and label
// smoothing eps (DPO/cDPO only):
//
//	h = (πw − ρw) − (πl − ρl)
//	dpo/cdpo: −(1−ε)·log σ(βh) − ε·log σ(−βh)
//	ipo:      (h̄ − 1/(2β))², h̄ from length-normalised log-probs
//	hinge:    max(0, 1 − βh)
func PreferenceLoss(method string, beta, eps float64, p PairLogps) (PairLoss, error) {
	if beta <= 0 || math.IsNaN(beta) {
		return PairLoss{}, fmt.Errorf("beta must be positive (got %g)", beta)
	}
	var out PairLoss
	out.RewardW = beta * (p.PiW - p.RefW)
	out.RewardL = beta * (p.PiL - p.RefL)
	out.Margin = out.RewardW - out.RewardL
	out.Correct = out.RewardW > out.RewardL
	h := (p.PiW - p.RefW) - (p.PiL - p.RefL)
	switch method {
	case DPO, CDPO:
		z := beta * h
		out.Loss = -(1-eps)*LogSigmoid(z) - eps*LogSigmoid(-z)
		dh := beta * (-(1-eps)*Sigmoid(-z) + eps*Sigmoid(z))
		out.DPiW, out.DPiL = dh, -dh
	case IPO:
		if p.NW <= 0 || p.NL <= 0 {
			return PairLoss{}, fmt.Errorf("ipo needs response token counts")
		}
		hb := (p.PiW-p.RefW)/float64(p.NW) - (p.PiL-p.RefL)/float64(p.NL)
		d := hb - 1/(2*beta)
		out.Loss = d * d
		out.DPiW = 2 * d / float64(p.NW)
		out.DPiL = -2 * d / float64(p.NL)
	case Hinge:
		if v := 1 - beta*h; v > 0 {
			out.Loss = v
			out.DPiW, out.DPiL = -beta, beta
		}
	default:
		return PairLoss{}, fmt.Errorf("unknown preference method %q", method)
	}
	return out, nil
}

// BetaTable maps objectives to β, with an override for all.
type BetaTable struct {
	Table    map[string]float64
	Override float64 // > 0: use for every objective
}

// MergeBetas overlays a user table (objective → β; "default" for the rest)
// on DefaultBetas.
func MergeBetas(user map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(DefaultBetas)+len(user))
	for k, v := range DefaultBetas {
		out[k] = v
	}
	for k, v := range user {
		out[strings.ToLower(k)] = v
	}
	return out
}

// Beta returns the β for an objective.
func (b BetaTable) Beta(objective string) float64 {
	if b.Override > 0 {
		return b.Override
	}
	if v, ok := b.Table[strings.ToLower(objective)]; ok {
		return v
	}
	if v, ok := b.Table["default"]; ok {
		return v
	}
	return DefaultBeta
}

// String lists the table sorted by objective.
func (b BetaTable) String() string {
	if b.Override > 0 {
		return fmt.Sprintf("β=%g for all objectives", b.Override)
	}
	keys := make([]string, 0, len(b.Table))
	for k := range b.Table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%g", k, b.Table[k]))
	}
	return "β " + strings.Join(parts, " ")
}

// Schedule is a learning-rate schedule: linear warm-up, then cosine or
// linear decay to MinRatio·LR, or constant.
type Schedule struct {
	LR       float64
	Warmup   int
	Total    int
	Kind     string // "cosine", "linear" or "constant"
	MinRatio float64
}

// At returns the learning rate for optimiser step s (0-based).
func (s Schedule) At(step int) float64 {
	if s.Warmup > 0 && step < s.Warmup {
		return s.LR * float64(step+1) / float64(s.Warmup)
	}
	if s.Kind == "constant" || s.Total <= s.Warmup {
		return s.LR
	}
	frac := float64(step-s.Warmup) / float64(max(1, s.Total-s.Warmup))
	frac = math.Min(math.Max(frac, 0), 1)
	var f float64
	switch s.Kind {
	case "linear":
		f = 1 - frac
	default:
		f = 0.5 * (1 + math.Cos(math.Pi*frac))
	}
	return s.LR * (s.MinRatio + (1-s.MinRatio)*f)
}

// Metrics aggregate pairs in TRL's names.
type Metrics struct {
	N                         int
	Loss                      float64
	RewardsChosen, RewardsRej float64
	Margins, Accuracies       float64
	LogpsChosen, LogpsRej     float64
	NLL                       float64 // preferences: sum of chosen mean-token NLLs (RPO runs); SFT: sum of token NLLs
	Tokens                    int     // SFT: scored tokens
	// KTO accumulates KTO's examples (align/train's kto objective).
	KTO KTOMetrics
	// ByObjective, when not nil, also accumulates each pair under its
	// objective (held-out rows report accuracy and margin per objective,
	// since each objective has its own β)
	ByObjective map[string]*Metrics
	// Extra sums a method's own per-pair metrics (ORPO's log_odds_ratio,
	// ...): Map reports each as its mean over N
	Extra map[string]float64
}

// AddExtra adds v to the method metric key (see Extra).
func (m *Metrics) AddExtra(key string, v float64) {
	if m.Extra == nil {
		m.Extra = map[string]float64{}
	}
	m.Extra[key] += v
}

// AddObjective accumulates one pair (and its NLL) under its objective.
func (m *Metrics) AddObjective(objective string, l PairLoss, p PairLogps, nll float64) {
	if m.ByObjective == nil {
		return
	}
	if objective == "" {
		objective = "default"
	}
	o := m.ByObjective[objective]
	if o == nil {
		o = &Metrics{}
		m.ByObjective[objective] = o
	}
	o.Add(l, p)
	o.NLL += nll
}

// ObjectiveMap is Map for each objective, keyed "objective/<name>/<key>".
func (m Metrics) ObjectiveMap() map[string]float64 {
	out := map[string]float64{}
	for name, o := range m.ByObjective {
		for k, v := range o.Map() {
			out["objective/"+name+"/"+k] = v
		}
		out["objective/"+name+"/pairs"] = float64(o.N)
	}
	return out
}

// Add accumulates one pair.
func (m *Metrics) Add(l PairLoss, p PairLogps) {
	m.N++
	m.Loss += l.Loss
	m.RewardsChosen += l.RewardW
	m.RewardsRej += l.RewardL
	m.Margins += l.Margin
	if l.Correct {
		m.Accuracies++
	}
	m.LogpsChosen += p.PiW
	m.LogpsRej += p.PiL
}

// Map returns the means keyed as TRL logs them.
func (m Metrics) Map() map[string]float64 {
	if m.N == 0 {
		return map[string]float64{}
	}
	n := float64(m.N)
	out := map[string]float64{
		"loss":               m.Loss / n,
		"rewards/chosen":     m.RewardsChosen / n,
		"rewards/rejected":   m.RewardsRej / n,
		"rewards/margins":    m.Margins / n,
		"rewards/accuracies": m.Accuracies / n,
		"logps/chosen":       m.LogpsChosen / n,
		"logps/rejected":     m.LogpsRej / n,
	}
	if m.NLL != 0 {
		out["nll_loss"] = m.NLL / n
	}
	for k, v := range m.Extra {
		out[k] = v / n
	}
	return out
}

// RewardLoss is one pair's reward-model loss for rewards rw (chosen) and
// rl (rejected), margin m and centering coefficient c, with its
// derivatives:
//
//	loss = −log σ(rw − rl − m) + c·(rw + rl)²
func RewardLoss(rw, rl, m, c float64) (loss, drw, drl float64) {
	z := rw - rl - m
	dz := -Sigmoid(-z) // d/dz −log σ(z)
	center := 2 * c * (rw + rl)
	return -LogSigmoid(z) + c*(rw+rl)*(rw+rl), dz + center, -dz + center
}

// AdamW's moment decay rates and ε, for every optimiser step align takes.
const (
	AdamBeta1 = 0.9
	AdamBeta2 = 0.999
	AdamEps   = 1e-8
)

// ClipScale is the factor that clips a gradient of norm to maxNorm (1 when
// maxNorm is 0 or the norm is within it).
func ClipScale(norm, maxNorm float64) float64 {
	if maxNorm > 0 && norm > maxNorm {
		return maxNorm / norm
	}
	return 1
}
