package train

import (
	"github.com/align-dev/align/bindings"
)

// This file is the one place that knows *bindings.Trainer: the native
// engine has the per-token seam the driver is written against (Outputs with
// per-token log-probs; Backward takes a cotangent per scored token), so the
// adaptation is the identity.

// Outputs is one forward's result: per-sequence sums, per-token log-probs
// (sequence 0's scored positions ascending, then sequence 1, ...) and
// head values.
type Outputs = bindings.Outputs

var _ Trainer = (*bindings.Trainer)(nil)

// asTrainer is t as a Trainer.
func asTrainer(t *bindings.Trainer) Trainer { return t }

// openNative loads the model and the native trainer over its weights.
func openNative(model string, opt bindings.TrainerOptions) (Trainer, func() error, error) {
	t, err := bindings.NewTrainerFromFile(model, opt)
	if err != nil {
		return nil, nil, err
	}
	return t, t.Close, nil
}
