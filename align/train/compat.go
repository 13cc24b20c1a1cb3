package train

import "github.com/align-dev/align/align/run"

// The device settings of every method live in align/run; these are the
// names align/train has exported since before it.
const (
	DeviceUsage          = run.DeviceUsage
	BackwardWeightsUsage = run.BackwardWeightsUsage
	RecomputeUsage       = run.RecomputeUsage
)

// ErrInterrupted is run.ErrInterrupted.
var ErrInterrupted = run.ErrInterrupted

// CheckBackwardWeights checks a --backward-weights value.
func CheckBackwardWeights(v string) error { return run.CheckBackwardWeights(v) }

// CheckRecompute checks a --recompute value.
func CheckRecompute(v string) error { return run.CheckRecompute(v) }

// ResolveDevice turns a --device value into the trainer's device.
func ResolveDevice(device string) string { return run.ResolveDevice(device) }

// Event and Progress are the harness's progress updates.
type (
	Event    = run.Event
	Progress = run.Progress
)
