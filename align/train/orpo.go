package train

import (
	"fmt"

	"github.com/align-dev/align/align/objective"
)

// orpoObjective is ORPO (objective.ORPOLoss): the chosen response's mean
// token NLL plus λ × the odds-ratio term, on pairs, with no reference pass.
type orpoObjective struct {
	noRefPairs
	lambda float64
}

func newORPO(cfg Config) method { return orpoObjective{lambda: cfg.ORPOLambda} }

// score is the held-out loss: ORPO's loss is its SFT and its preference
// term together, and the margin alone would reward unlearning both answers.
func (orpoObjective) score(em map[string]float64) float64 { return -em["loss"] }

func (orpoObjective) line(m map[string]float64) string {
	return fmt.Sprintf("loss %.4f nll %.3f log-odds %.3f acc %.2f", m["loss"], m["nll_loss"], m["log_odds_chosen"], m["rewards/accuracies"])
}

func (o orpoObjective) loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	return pairCots(exs, mb, out, norm, func(ex *Example, p PairLogps) (PairLoss, error) {
		l, terms, err := objective.ORPOLoss(o.lambda, p)
		if err != nil {
			return l, err
		}
		// TRL's logps/chosen and logps/rejected of ORPO are the mean token
		// log-probs its odds are taken of
		mean := PairLogps{PiW: p.PiW / float64(p.NW), PiL: p.PiL / float64(p.NL)}
		m.Add(l, mean)
		m.AddObjective(ex.Objective, l, mean, terms.NLL)
		m.NLL += terms.NLL
		m.AddExtra("log_odds_ratio", terms.LogOddsRatio)
		m.AddExtra("log_odds_chosen", terms.LogOdds)
		return l, nil
	})
}
