package train

import (
	"slices"
	"strings"

	"github.com/align-dev/align/bindings"
)

// Devices a run may name with --device: auto (the default), cpu, cuda (or
// gpu), or a ggml device name such as CUDA0.
const DeviceUsage = "where the training step runs: auto (a GPU when this is a CUDA build on a GPU host, else the CPU), cpu, cuda, or a device name such as CUDA0"

// ResolveDevice turns a --device value into the trainer's device: "auto"
// (or "") picks the first GPU of a CUDA build on a machine that has one and
// the CPU everywhere else; cpu, cuda and device names pass through (the
// trainer rejects a device this build or machine lacks, naming what it has).
func ResolveDevice(device string) string {
	switch d := strings.ToLower(strings.TrimSpace(device)); d {
	case "", "auto":
		if g := bindings.GPUDevice(); g != "" {
			return g
		}
		return "cpu"
	case "cpu":
		return "cpu"
	default:
		return strings.TrimSpace(device)
	}
}

// BackwardWeightsUsage describes --backward-weights.
const BackwardWeightsUsage = "CPU: the frozen weights' copies for the input gradient: auto (repacked Q4_K for Q4_K weights where the CPU has the kernel: faster, 18x the gradient error of q8_0), q8_0, or q4_k"

// CheckBackwardWeights checks a --backward-weights value.
func CheckBackwardWeights(v string) error {
	if v != "" && !slices.Contains(bindings.BackwardWeightsNames, strings.ToLower(v)) {
		return bad("backward-weights", "must be one of %s (got %q)", strings.Join(bindings.BackwardWeightsNames, ", "), v)
	}
	return nil
}

// RecomputeUsage describes --recompute.
const RecomputeUsage = "gradient checkpointing: keep each layer's input and recompute the layer in the backward (same gradients, bit for bit; activation memory of one layer; about 1.5x the step time): auto (on for a GPU, off on the CPU), on, off"

// CheckRecompute checks a --recompute value.
func CheckRecompute(v string) error {
	switch strings.ToLower(v) {
	case "", "auto", "on", "off":
		return nil
	}
	return bad("recompute", "must be auto, on or off (got %q)", v)
}

// ResolveRecompute says whether a trainer on device (as ResolveDevice
// returns it) recomputes for a --recompute value.
func ResolveRecompute(v, device string) bool {
	switch strings.ToLower(v) {
	case "on":
		return true
	case "off":
		return false
	}
	return !strings.EqualFold(device, "cpu")
}
