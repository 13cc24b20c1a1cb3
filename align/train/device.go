package train

import (
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
