package train

import (
	"fmt"

	"github.com/align-dev/align/align/objective"
)

// simpoObjective is SimPO (objective.SimPOLoss): length-normalised rewards
// β·log π(y)/|y| with a target margin γ, on pairs, with no reference pass;
// label smoothing ε as cDPO's, and with rpoAlpha > 0 α × the chosen
// response's mean token NLL (TRL's CPO-SimPO, cpo_alpha).
type simpoObjective struct {
	beta, gamma, eps, rpoAlpha float64
}

func newSimPO(cfg Config) method {
	return simpoObjective{beta: cfg.Beta, gamma: cfg.SimPOGamma, eps: cfg.LabelSmoothing, rpoAlpha: cfg.RPOAlpha}
}

func (simpoObjective) pairwise() bool                      { return true }
func (simpoObjective) needsReference() bool                { return false }
func (simpoObjective) score(em map[string]float64) float64 { return em["rewards/margins"] }
func (simpoObjective) line(m map[string]float64) string    { return prefLine(m) }

func (simpoObjective) norm(exs []Example, group []MicroBatch) float64 {
	return prefObjective{}.norm(exs, group)
}

func (o simpoObjective) loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	n, err := checkOutputs(exs, mb, out, true)
	if err != nil {
		return nil, err
	}
	cot := make([]float32, n)
	off := 0
	for k, i := range mb.Examples {
		ex := &exs[i]
		p := PairLogps{PiW: out.Sums[2*k], PiL: out.Sums[2*k+1], NW: len(ex.Chosen), NL: len(ex.Rejected)}
		l, err := objective.SimPOLoss(o.beta, o.gamma, o.eps, p)
		if err != nil {
			return nil, fmt.Errorf("pair %q: %w", ex.ID, err)
		}
		var nll float64
		if o.rpoAlpha > 0 {
			nll = -p.PiW / float64(p.NW)
			l.Loss += o.rpoAlpha * nll
			l.DPiW -= o.rpoAlpha / float64(p.NW)
			m.NLL += nll
		}
		// TRL's logps of SimPO are the mean token log-probs its rewards are
		mean := PairLogps{PiW: p.PiW / float64(p.NW), PiL: p.PiL / float64(p.NL)}
		m.Add(l, mean)
		m.AddObjective(ex.Objective, l, mean, nll)
		off = broadcast(cot, off, p.NW, l.DPiW/norm)
		off = broadcast(cot, off, p.NL, l.DPiL/norm)
	}
	return cot, nil
}

func (simpoObjective) metrics(m Metrics) map[string]float64 { return m.Map() }
