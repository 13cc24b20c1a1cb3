package train

import (
	"errors"
	"fmt"

	"github.com/align-dev/align/bindings"
)

// This file is the one place that knows the per-call signatures of
// *bindings.Trainer. It adapts today's per-sequence seam (Forward returns
// sums, Backward takes dL/dsum) to the per-token one the driver is written
// against (Outputs with per-token log-probs; Backward takes a cotangent per
// scored token). When bindings grows that seam, this file shrinks to
// `type Outputs = bindings.Outputs` and openNative returning the trainer.

// Outputs is one forward's result.
type Outputs struct {
	Sums  []float64 // (NSeq) per sequence: the sum of its scored token log-probs
	Logps []float32 // (NScored) per scored token in batch order: sequence 0's scored positions ascending, then sequence 1, ...
}

// nativeEngine adapts *bindings.Trainer to Trainer. Not safe for
// concurrent use.
type nativeEngine struct {
	t *bindings.Trainer
	// scored[k] is the number of scored tokens of sequence k in the batch of
	// the last ForwardGrad: Backward reduces per-token cotangents with it
	scored []int
}

var _ Trainer = (*nativeEngine)(nil)

// asTrainer is t as a Trainer.
func asTrainer(t *bindings.Trainer) Trainer { return &nativeEngine{t: t} }

// openNative loads the native trainer.
func openNative(model string, opt bindings.TrainerOptions) (Trainer, func() error, error) {
	t, err := bindings.NewTrainer(model, opt)
	if err != nil {
		return nil, nil, err
	}
	return asTrainer(t), t.Close, nil
}

func (e *nativeEngine) Forward(b *bindings.Batch, loraScale float32) (Outputs, error) {
	sums, lps, err := e.t.Forward(b, loraScale, true)
	return Outputs{Sums: sums, Logps: lps}, err
}

// ForwardGrad returns Outputs without Logps: today's native forward_grad
// does not return per-token values, and no objective built on the
// per-sequence seam reads them (perSequence checks it).
func (e *nativeEngine) ForwardGrad(b *bindings.Batch) (Outputs, error) {
	sums, err := e.t.ForwardGrad(b)
	if err != nil {
		return Outputs{}, err
	}
	e.scored = e.scored[:0]
	for k := 0; k < b.NSeq; k++ {
		n := 0
		for _, s := range b.Scored[k*b.NTok : (k+1)*b.NTok] {
			if s != 0 {
				n++
			}
		}
		e.scored = append(e.scored, n)
	}
	return Outputs{Sums: sums}, nil
}

// Backward reduces cot to one dL/dsum per sequence, which is exact while
// the cotangent is uniform within each sequence (SFT and the DPO family);
// it refuses anything else rather than train on a wrong gradient.
func (e *nativeEngine) Backward(cot []float32) error {
	d, err := perSequence(cot, e.scored)
	if err != nil {
		return err
	}
	return e.t.Backward(d)
}

// perSequence returns the common cotangent of each sequence's tokens.
func perSequence(cot []float32, scored []int) ([]float64, error) {
	n := 0
	for _, s := range scored {
		n += s
	}
	if len(cot) != n {
		return nil, fmt.Errorf("train: %d cotangents for %d scored tokens", len(cot), n)
	}
	d := make([]float64, len(scored))
	off := 0
	for k, s := range scored {
		if s == 0 {
			continue
		}
		v := cot[off]
		for _, x := range cot[off : off+s] {
			if x != v {
				return nil, errors.New("train: the native trainer takes one cotangent per sequence; this objective varies within one")
			}
		}
		d[k] = float64(v)
		off += s
	}
	return d, nil
}

func (e *nativeEngine) GradNorm(scale float64) (float64, error) { return e.t.GradNorm(scale) }
func (e *nativeEngine) Step(p bindings.AdamW) error             { return e.t.Step(p) }
func (e *nativeEngine) GetState() (bindings.State, error)       { return e.t.GetState() }
func (e *nativeEngine) SetState(params, m, v []float32, step int64) error {
	return e.t.SetState(params, m, v, step)
}
func (e *nativeEngine) Export(path string) error   { return e.t.Export(path) }
func (e *nativeEngine) Info() bindings.TrainerInfo { return e.t.Info() }
