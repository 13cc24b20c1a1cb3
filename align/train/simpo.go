package train

import "github.com/align-dev/align/align/objective"

// simpoObjective is SimPO (objective.SimPOLoss): length-normalised rewards
// β·log π(y)/|y| with a target margin γ, on pairs, with no reference pass;
// label smoothing ε as cDPO's, and with rpoAlpha > 0 α × the chosen
// response's mean token NLL (TRL's CPO-SimPO, cpo_alpha).
type simpoObjective struct {
	noRefPairs
	beta, gamma, eps, rpoAlpha float64
}

func newSimPO(cfg Config) method {
	return simpoObjective{beta: cfg.Beta, gamma: cfg.SimPOGamma, eps: cfg.LabelSmoothing, rpoAlpha: cfg.RPOAlpha}
}

func (simpoObjective) score(em map[string]float64) float64 { return em["rewards/margins"] }
func (simpoObjective) line(m map[string]float64) string    { return prefLine(m) }

func (o simpoObjective) loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	return pairCots(exs, mb, out, norm, func(ex *Example, p PairLogps) (PairLoss, error) {
		l, err := objective.SimPOLoss(o.beta, o.gamma, o.eps, p)
		if err != nil {
			return l, err
		}
		nll := rpoTerm(o.rpoAlpha, p, &l, m)
		// TRL's logps of SimPO are the mean token log-probs its rewards are
		mean := PairLogps{PiW: p.PiW / float64(p.NW), PiL: p.PiL / float64(p.NL)}
		m.Add(l, mean)
		m.AddObjective(ex.Objective, l, mean, nll)
		return l, nil
	})
}
