package run

import (
	"errors"
	"slices"
	"strings"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/bindings"
)

// DeviceUsage describes --device.
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

// CheckDevice refuses, before anything is read, a GPU device where this
// build or machine has none.
func CheckDevice(device string) error {
	switch d := strings.ToLower(strings.TrimSpace(device)); d {
	case "", "auto", "cpu":
		return nil
	default:
		if bindings.GPUDevice() == "" {
			return Bad("device", "is %q, but this align has no GPU device (a CPU-only build, or no GPU and driver here): use --device cpu or auto", device)
		}
	}
	return nil
}

// BackwardWeightsUsage describes --backward-weights.
const BackwardWeightsUsage = "CPU: the frozen weights' copies for the input gradient: auto (repacked Q4_K for Q4_K weights where the CPU has the kernel: faster, 18x the gradient error of q8_0), q8_0, q4_k, or tiles (no copies: each backward makes them in tiles of a few MiB, q8_0's accuracy; saves about the base's size in memory for some step time; the base is then kept unrepacked)"

// CheckBackwardWeights checks a --backward-weights value.
func CheckBackwardWeights(v string) error {
	if v != "" && !slices.Contains(bindings.BackwardWeightsNames, strings.ToLower(v)) {
		return Bad("backward-weights", "must be one of %s (got %q)", strings.Join(bindings.BackwardWeightsNames, ", "), v)
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
	return Bad("recompute", "must be auto, on or off (got %q)", v)
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

// TrainerOptions are the native trainer's options for c: its device
// (resolved), threads, recompute and the policy set's shape.
func (c *Common) TrainerOptions() bindings.TrainerOptions {
	targets, _ := TargetBits(c.Targets)
	device := ResolveDevice(c.Device)
	return bindings.TrainerOptions{Threads: c.Threads, Rank: c.Rank, Alpha: float32(c.Alpha), Targets: targets, Seed: c.Seed,
		Device: device, BackwardWeights: c.BackwardWeights, Recompute: ResolveRecompute(c.Recompute, device)}
}

// OpenTrainer loads the model at path and a trainer over it that owns it.
// Device policy lives here, not in bindings: a device trainer reads every
// weight (and the LM head) on the device, so the model is offloaded whole
// (and rollouts sample there too).
func OpenTrainer(path string, opt bindings.TrainerOptions) (*bindings.Trainer, error) {
	mo := opt.ModelOptions()
	if opt.Device != "" && !strings.EqualFold(opt.Device, "cpu") {
		mo.GPULayers = 1 << 20
		mo.NoExtraBuffers = false // a device trainer makes no tiles
	}
	m, err := bindings.LoadModel(path, mo)
	if err != nil {
		return nil, err
	}
	tr, err := bindings.NewTrainerOwning(m, opt)
	if err != nil {
		m.Close()
		return nil, err
	}
	return tr, nil
}

// AdamW is the optimiser step of every method: AdamW with align's moment
// rates and ε (align/objective) at lr, weight decay wd and the gradient
// scaled by scale (clipping).
func AdamW(lr, wd, scale float64) bindings.AdamW {
	return bindings.AdamW{LR: float32(lr), Beta1: objective.AdamBeta1, Beta2: objective.AdamBeta2, Eps: objective.AdamEps,
		WeightDecay: float32(wd), GradScale: float32(scale)}
}

// Optimiser is AdamW with global-norm gradient clipping: the optimiser step
// of every method (SFT, the DPO family, the reward model, PPO's policy and
// value sets, GRPO).
type Optimiser struct {
	WeightDecay float64
	MaxGradNorm float64 // 0: no clipping
}

// StepSet is what an optimiser step needs of an adapter set.
type StepSet interface {
	GradNorm(scale float64) (float64, error)
	Step(p bindings.AdamW) error
}

// ErrNonFinite is a step whose gradient is not finite (no update is made).
var ErrNonFinite = errors.New("the gradient is not finite (lower --lr, or check the reward's scale)")

// Step is one optimiser step of set at lr over the gradient accumulate adds
// (forward_grad, loss, backward per micro-batch: the gradient accumulates):
// clip the global norm to MaxGradNorm, AdamW, clear the gradient. It
// returns the norm before clipping.
func (o Optimiser) Step(set StepSet, lr float64, accumulate func() error) (float64, error) {
	if err := accumulate(); err != nil {
		return 0, err
	}
	gn, err := set.GradNorm(1)
	if err != nil {
		return 0, err
	}
	if !Finite(gn) {
		return gn, ErrNonFinite
	}
	return gn, set.Step(AdamW(lr, o.WeightDecay, objective.ClipScale(gn, o.MaxGradNorm)))
}
