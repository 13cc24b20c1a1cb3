package train

import (
	"fmt"

	"github.com/align-dev/align/align/objective"
)

// orpoObjective is ORPO (objective.ORPOLoss): the chosen response's mean
// token NLL plus λ × the odds-ratio term, on pairs, with no reference pass.
type orpoObjective struct{ lambda float64 }

func newORPO(cfg Config) method { return orpoObjective{lambda: cfg.ORPOLambda} }

func (orpoObjective) pairwise() bool       { return true }
func (orpoObjective) needsReference() bool { return false }

// score is the held-out loss: ORPO's loss is its SFT and its preference
// term together, and the margin alone would reward unlearning both answers.
func (orpoObjective) score(em map[string]float64) float64 { return -em["loss"] }

func (orpoObjective) line(m map[string]float64) string {
	return fmt.Sprintf("loss %.4f nll %.3f log-odds %.3f acc %.2f", m["loss"], m["nll_loss"], m["log_odds_chosen"], m["rewards/accuracies"])
}

func (o orpoObjective) norm(exs []Example, group []MicroBatch) float64 {
	return prefObjective{}.norm(exs, group)
}

func (o orpoObjective) loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	n, err := checkOutputs(exs, mb, out, true)
	if err != nil {
		return nil, err
	}
	cot := make([]float32, n)
	off := 0
	for k, i := range mb.Examples {
		ex := &exs[i]
		p := PairLogps{PiW: out.Sums[2*k], PiL: out.Sums[2*k+1], NW: len(ex.Chosen), NL: len(ex.Rejected)}
		l, terms, err := objective.ORPOLoss(o.lambda, p)
		if err != nil {
			return nil, fmt.Errorf("pair %q: %w", ex.ID, err)
		}
		// TRL's logps/chosen and logps/rejected of ORPO are the mean token
		// log-probs its odds are taken of
		mean := PairLogps{PiW: p.PiW / float64(p.NW), PiL: p.PiL / float64(p.NL)}
		m.Add(l, mean)
		m.AddObjective(ex.Objective, l, mean, terms.NLL)
		m.NLL += terms.NLL
		m.AddExtra("log_odds_ratio", terms.LogOddsRatio)
		m.AddExtra("log_odds_chosen", terms.LogOdds)
		off = broadcast(cot, off, p.NW, l.DPiW/norm)
		off = broadcast(cot, off, p.NL, l.DPiL/norm)
	}
	return cot, nil
}

func (orpoObjective) metrics(m Metrics) map[string]float64 { return m.Map() }
