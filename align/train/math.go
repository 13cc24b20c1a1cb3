package train

import (
	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/bindings"
)

// The losses, the schedule and the metrics are align/objective's (cgo-free);
// these are their names in this package.
type (
	PairLogps = objective.PairLogps
	PairLoss  = objective.PairLoss
	BetaTable = objective.BetaTable
	Schedule  = objective.Schedule
	Metrics   = objective.Metrics
)

// DefaultBetas are the per-objective β of weighted DPO.
var DefaultBetas = objective.DefaultBetas

// DefaultBeta applies to objectives the table does not name.
const DefaultBeta = objective.DefaultBeta

// PreferenceLoss is objective.PreferenceLoss.
func PreferenceLoss(method string, beta, eps float64, p PairLogps) (PairLoss, error) {
	return objective.PreferenceLoss(method, beta, eps, p)
}

// MergeBetas is objective.MergeBetas.
func MergeBetas(user map[string]float64) map[string]float64 { return objective.MergeBetas(user) }

func logSigmoid(x float64) float64 { return objective.LogSigmoid(x) }
func sigmoid(x float64) float64    { return objective.Sigmoid(x) }

// Outputs is one forward's result: per-sequence sums, per-token log-probs
// (sequence 0's scored positions ascending, then sequence 1, ...) and
// head values.
type Outputs = bindings.Outputs

// asTrainer is the policy set (0) of t as a Trainer.
func asTrainer(t *bindings.Trainer) Trainer { return t.Set(0) }
