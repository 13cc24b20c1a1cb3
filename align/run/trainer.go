package run

import "github.com/align-dev/align/bindings"

// Trainer is what a method needs of one adapter set over a frozen base:
// forwards that return per-token log-probs and head values, a backward that
// takes one cotangent per scored token and per head value, and AdamW over
// the accumulated gradient. bindings.Set implements it, and so does
// align/run/fake's closed-form set, which the loop tests of align/train and
// align/rl run on. Implementations need not be safe for concurrent use.
type Trainer interface {
	// Forward scores b without keeping a gradient; loraScale 0 is the
	// frozen reference.
	Forward(b *bindings.Batch, loraScale float32) (bindings.Outputs, error)
	// ForwardGrad scores b with the adapters on and keeps what Backward
	// needs.
	ForwardGrad(b *bindings.Batch) (bindings.Outputs, error)
	// Backward accumulates (+=) the gradient of a loss whose derivatives
	// with respect to the last ForwardGrad's Logps and Heads are cot and
	// headCot (same lengths; nil: zeros).
	Backward(cot, headCot []float32) error
	// GradNorm is the L2 norm of the accumulated gradient times scale.
	GradNorm(scale float64) (float64, error)
	// Step applies AdamW from the accumulated gradient and clears it.
	Step(p bindings.AdamW) error
	GetState() (bindings.State, error)
	// SetState restores parameters and moments (nil slices are kept).
	SetState(params, m, v []float32, step int64) error
	Export(path string) error
	// NParams is the length of the flat state (checkpoints check it).
	NParams() (int64, error)
}

var (
	_ Trainer = bindings.Set{}
	_ Set     = Trainer(nil)
	_ StepSet = Trainer(nil)
)
