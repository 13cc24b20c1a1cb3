// Package run is the harness every training method runs on: the run
// directory and its rules (run.go), config.json with input hashes that a
// resume checks (inputs.go), metrics.jsonl (metrics.go), the checkpoint
// store and its codec for N adapter sets plus the cursor (ckpt.go), one
// progress Event (progress.go) and one loop over a Stepper (loop.go):
// interrupt → checkpoint → ErrInterrupted, eval and save cadence, catch-up
// after a resume, early stopping and epochs. align/train (SFT, the DPO
// family, the reward model) and align/rl (PPO, GRPO) wire their methods
// into it; the command only fills a Config.
package run

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"

	"github.com/align-dev/align/align/prompt"
)

// ErrInterrupted is returned (wrapped) when the context ended and a
// checkpoint was saved: rerun with Resume to continue.
var ErrInterrupted = errors.New("interrupted; rerun with --resume to continue")

// ConfigError is a bad setting, named by its command-line flag. The CLI
// reports it as a usage error (exit 2).
type ConfigError struct {
	Flag string // without dashes
	Msg  string // e.g. "must not be negative (got -1)"
}

func (e *ConfigError) Error() string { return "--" + e.Flag + " " + e.Msg }

// Bad is a *ConfigError for flag.
func Bad(flag, format string, a ...any) error {
	return &ConfigError{Flag: flag, Msg: fmt.Sprintf(format, a...)}
}

// Finite reports whether x is a number other than ±Inf.
func Finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// MaxThreads is the most --threads accepted: oversubscribing the cores
// only slows ggml down.
func MaxThreads() int { return max(8, 4*runtime.NumCPU()) }

// ResumeOptions are the settings a resumed run may change: they alter how
// far the run goes, not what the steps already taken mean.
type ResumeOptions struct {
	Epochs   *int
	MaxSteps *int
}

// Common are the settings every method shares: the run directory, the base
// and the policy's adapter, the schedule and the loop's cadence. Each
// method's Config embeds it (config.json stores its fields flat).
type Common struct {
	Method string
	Model  string
	// Out is the run directory. It is not read back on resume: a run is
	// always resumed in the directory it is found in.
	Out    string
	Resume bool
	// Force replaces the run in Out (only the files align writes; nothing
	// else in the folder is touched).
	Force bool `json:"-"`

	EvalSplit   float64 // fraction of the training data held out when no held-out file is given
	Epochs      int
	LR          float64
	Schedule    string // cosine, linear, constant
	WarmupSteps int
	MaxGradNorm float64
	MaxLength   int
	Rank        int
	Alpha       float64
	Targets     []string // q, k, v, o, gate, up, down
	Seed        uint64
	Threads     int
	Device      string `json:",omitempty"` // see ResolveDevice; "" is auto
	// BackwardWeights: the CPU trainer's weight copies for the input
	// gradient ("" or auto, q8_0, q4_k, tiles; bindings.TrainerOptions)
	BackwardWeights string `json:",omitempty"`
	// Recompute: gradient checkpointing, "" or auto (on for a GPU), on, off
	Recompute   string  `json:",omitempty"`
	EvalEvery   int     // steps between held-out evaluations (0: each epoch)
	SaveEvery   int     // steps between checkpoints (0: each epoch)
	Patience    int     // evaluations without a better held-out score before stopping (0: off)
	MaxSteps    int     // stop after this many steps (0: all epochs)
	WeightDecay float64 // AdamW's decoupled weight decay
	Raw         bool    // no chat template
	// ChatTemplate is --chat-template: a Jinja template FILE (absolute
	// path) that replaces the model's; its hash is an input a resume
	// checks. ChatTemplateKwargs is --chat-template-kwargs as given
	// (KEY=VALUE,... or a JSON object). Both format every prompt and
	// response the run encodes, rolls out and judges locally.
	ChatTemplate       string `json:",omitempty"`
	ChatTemplateKwargs string `json:",omitempty"`

	// InitAdapter: the policy starts from this LoRA GGUF instead of B = 0.
	// RefAdapter: the reference is base + this LoRA GGUF (frozen); the
	// policy starts from it too unless InitAdapter is set. With either, a
	// zero Rank or Alpha and empty Targets take the file's; other values
	// must equal the file's.
	InitAdapter string `json:",omitempty"`
	RefAdapter  string `json:",omitempty"`

	// Hashes are the SHA-256 of the run's inputs (keyed "model", "data",
	// ...), recorded when the run starts and checked on resume; Stats
	// are the files' size, modification time and inode when they were
	// hashed, so an unchanged file is not read again (inputs.go).
	Hashes map[string]string   `json:",omitempty"`
	Stats  map[string]FileStat `json:",omitempty"`

	// Continue holds what a resumed run may change; nil fields keep the
	// run's settings.
	Continue ResumeOptions `json:"-"`
	// OnStep, if set, is called after each step (tests use it to
	// interrupt a run at a chosen step).
	OnStep func(step int) `json:"-"`
}

// PolicyInit is the adapter the policy starts from ("" for B = 0).
func (c *Common) PolicyInit() string {
	if c.InitAdapter != "" {
		return c.InitAdapter
	}
	return c.RefAdapter
}

// Validate checks the shared settings without touching a file: the first
// bad one is returned as a *ConfigError.
func (c *Common) Validate() error {
	fromFile := c.PolicyInit() != ""
	switch {
	case c.Model == "":
		return Bad("model", "is required")
	case c.Out == "":
		return Bad("out", "is required")
	case c.Epochs < 1:
		return Bad("epochs", "must be at least 1 (got %d)", c.Epochs)
	case !(c.LR > 0) || !Finite(c.LR):
		return Bad("lr", "must be a positive number (got %g)", c.LR)
	case c.WarmupSteps < 0:
		return Bad("warmup-steps", "must not be negative (got %d)", c.WarmupSteps)
	case !(c.MaxGradNorm >= 0) || !Finite(c.MaxGradNorm):
		return Bad("max-grad-norm", "must be a number >= 0, 0 for no clipping (got %g)", c.MaxGradNorm)
	case c.MaxLength < 8:
		return Bad("max-length", "must be at least 8 (got %d)", c.MaxLength)
	case c.Rank < 1 && !(c.Rank == 0 && fromFile):
		return Bad("lora-rank", "must be at least 1 (got %d)", c.Rank)
	case c.Rank > MaxRank:
		return Bad("lora-rank", "must be at most %d (got %d)", MaxRank, c.Rank)
	case (!(c.Alpha > 0) || !Finite(c.Alpha)) && !(c.Alpha == 0 && fromFile):
		return Bad("lora-alpha", "must be a positive number (got %g)", c.Alpha)
	case !(c.EvalSplit >= 0 && c.EvalSplit < 1):
		return Bad("eval-split", "must be in [0, 1) (got %g)", c.EvalSplit)
	case c.EvalEvery < 0:
		return Bad("eval-every", "must not be negative (got %d)", c.EvalEvery)
	case c.SaveEvery < 0:
		return Bad("save-every", "must not be negative (got %d)", c.SaveEvery)
	case c.Patience < 0:
		return Bad("patience", "must not be negative (got %d)", c.Patience)
	case !(c.WeightDecay >= 0) || !Finite(c.WeightDecay):
		return Bad("weight-decay", "must be a number >= 0 (got %g)", c.WeightDecay)
	case c.MaxSteps < 0:
		return Bad("max-steps", "must not be negative (got %d)", c.MaxSteps)
	case c.Threads < 0 || c.Threads > MaxThreads():
		return Bad("threads", "must be in [0, %d], 0 for all cores (got %d)", MaxThreads(), c.Threads)
	}
	switch c.Schedule {
	case "cosine", "linear", "constant":
	default:
		return Bad("schedule", "must be cosine, linear or constant (got %q)", c.Schedule)
	}
	if _, err := TargetBits(c.Targets); err != nil && !(len(c.Targets) == 0 && fromFile) {
		return &ConfigError{Flag: "lora-targets", Msg: err.Error()}
	}
	if err := CheckRecompute(c.Recompute); err != nil {
		return err
	}
	if _, err := prompt.ParseKwargs(c.ChatTemplateKwargs); err != nil {
		return Bad("chat-template-kwargs", "%v", err)
	}
	if c.ChatTemplate != "" && c.Raw {
		return Bad("chat-template", "and --raw exclude each other")
	}
	if err := CheckDevice(c.Device); err != nil {
		return err
	}
	return CheckBackwardWeights(c.BackwardWeights)
}

// PromptOptions are the formatter options of the run: --raw, the text of
// --chat-template's file and --chat-template-kwargs (align/prompt).
func (c *Common) PromptOptions() (prompt.Options, error) {
	o := prompt.Options{Raw: c.Raw}
	kw, err := prompt.ParseKwargs(c.ChatTemplateKwargs)
	if err != nil {
		return o, Bad("chat-template-kwargs", "%v", err)
	}
	o.Kwargs = kw
	if c.ChatTemplate != "" {
		b, err := os.ReadFile(c.ChatTemplate)
		if err != nil {
			return o, fmt.Errorf("--chat-template: %w", err)
		}
		if strings.TrimSpace(string(b)) == "" {
			return o, fmt.Errorf("--chat-template: %s is empty", c.ChatTemplate)
		}
		o.Template = string(b)
	}
	return o, nil
}

// MaxRank is the largest LoRA rank accepted: past it the adapter is larger
// than any projection it adapts on the models align trains (a rank of
// 100000 would otherwise fail late, inside the engine).
const MaxRank = 4096

// Targets is the one table of LoRA target names and their ALIGN_LORA_* bits
// (native: k_lora_targets in native/src/train_internal.h; bindings.TargetQ ...).
var Targets = []struct {
	Name string
	Bit  uint32
}{{"q", 1}, {"k", 2}, {"v", 4}, {"o", 8}, {"gate", 16}, {"up", 32}, {"down", 64}}

// TargetBits parses LoRA target names (q, k, v, o, gate, up, down).
func TargetBits(ts []string) (uint32, error) {
	var bits uint32
	for _, t := range ts {
		name := strings.ToLower(strings.TrimSpace(t))
		found := false
		for _, e := range Targets {
			if e.Name == name {
				bits |= e.Bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("has unknown LoRA target %q (want q, k, v, o, gate, up, down)", t)
		}
	}
	if bits == 0 {
		return 0, errors.New("names no LoRA targets")
	}
	return bits, nil
}

// TargetNames lists the bits of t as --lora-targets names.
func TargetNames(t uint32) []string {
	var out []string
	for _, e := range Targets {
		if t&e.Bit != 0 {
			out = append(out, e.Name)
		}
	}
	return out
}

// Resumed is the saved configuration of a run being resumed with what the
// command line may change (given): how far it goes and where it runs.
func (c *Common) Resumed(given Common) {
	c.Out, c.Resume = given.Out, true
	c.Threads, c.Device, c.Recompute, c.OnStep = given.Threads, given.Device, given.Recompute, given.OnStep
	if v := given.Continue.Epochs; v != nil {
		c.Epochs = *v
	}
	if v := given.Continue.MaxSteps; v != nil {
		c.MaxSteps = *v
	}
}

// Defaults are the shared settings' defaults, one set for every method.
//
// Rank 16, alpha 32 (scale 2), all seven projections, lr 5e-4: measured by
// align/train's BenchmarkStoriesSweep (scripts/bench-stories.sh; see train.DefaultConfig).
func Defaults(method string) Common {
	return Common{
		Method: method, EvalSplit: 0.1, Epochs: 3, LR: 5e-4, Schedule: "cosine", WarmupSteps: 10, WeightDecay: 0,
		MaxGradNorm: 1, MaxLength: 512, Rank: 16, Alpha: 32,
		Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, Seed: 1,
	}
}
