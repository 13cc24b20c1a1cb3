package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/rl"
	"github.com/align-dev/align/align/train"
)

func init() { register(trainCommand) }

func trainCommand() *cli.Command {
	d := train.DefaultConfig()
	return &cli.Command{
		Name:      "train",
		Usage:     "train a LoRA adapter on a frozen GGUF model (SFT, DPO, IPO, cDPO, hinge, reward model, PPO, GRPO)",
		ArgsUsage: " ",
		Description: `Trains LoRA adapters on preference pairs (JSON Lines, plain or TRL
conversational form, .zst allowed) with the model's chat template, and
writes OUT/metrics.jsonl (one JSON object per step; held-out rows carry
"split": "eval"), OUT/adapter.gguf (llama.cpp's LoRA format), checkpoints
and OUT/summary.json.

DPO β comes from each pair's objective (safety 0.05, tone 0.1, escalation
0.1, accuracy 0.3; other objectives 0.1); --beta overrides all, and
--beta-table reads {"objective": β, ...} from a JSON file and overrides those
entries ("default" sets the β of unnamed objectives). Reference
log-probs (adapter off) are computed once and cached in OUT.

--out must be a new or empty folder: an existing run is continued with
--resume or replaced with --force (which removes only the files align wrote
there). Paths are stored absolute and the model and data are hashed, so
--resume DIR works from any directory and refuses inputs that changed;
with --resume only --epochs, --max-steps, --threads, --device and --recompute may change. --data -
reads standard input and keeps a copy in the run.

Two stages (SFT, then DPO against the SFT model): train SFT, then pass its
adapter as --ref-adapter to the DPO run. The reference is then base + that
adapter (frozen), the policy starts from it (step 0's margins are exactly 0)
with its rank, alpha and targets, and OUT/adapter.gguf is one adapter that
llama.cpp loads alone: the SFT update and the DPO update together.
--init-adapter FILE starts the policy from FILE instead (with --ref-adapter:
from another adapter; without: against the plain base). Both files are
hashed like the model, for --resume.

--method rm trains a reward model: LoRA plus a scalar head on the final
hidden state of each response's last token, with the Bradley–Terry loss
−log σ(r_chosen − r_rejected − m) (+ --center-coef × (r_chosen +
r_rejected)²); held-out rows log rewards/accuracies and rewards/margins.
--margin-from scores takes m from the judge's scores align rank records
(mean criterion score of chosen − rejected), --margin-from margin from a
numeric "margin" field. It writes OUT/adapter.gguf (llama.cpp LoRA) and
OUT/head.gguf (align's heads GGUF: general.type "align.heads", tensors
heads.weight [n_embd, 1] and heads.bias [1], F32); align score --reward OUT
and the rm:OUT reward of PPO and GRPO load both.

Ctrl-C saves a checkpoint and exits with code 4; --resume OUT continues and
ends with the same adapter as an uninterrupted run. Bad flag values exit
with code 2 before anything is read or written.

Example:
   align train --method dpo --model models/tiny-q8_0.gguf --data testdata/pairs/train.jsonl \
      --eval-data testdata/pairs/eval.jsonl --out runs/dpo --epochs 3
   align train --resume runs/dpo
   align train --method sft --model M --data pairs.jsonl --out runs/sft
   align train --method dpo --model M --data pairs.jsonl --out runs/dpo2 \
      --ref-adapter runs/sft/adapter.gguf
   align train --method rm --model models/tiny-q8_0.gguf --data testdata/pairs/train.jsonl \
      --eval-data testdata/pairs/eval.jsonl --out runs/rm`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "method", Value: d.Method, Usage: "sft, dpo, ipo, cdpo, hinge, rm (reward model), ppo or grpo (ppo/grpo: --prompts and --reward instead of --data)", EnvVars: []string{"ALIGN_METHOD"}},
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "base GGUF model `FILE`", EnvVars: []string{"ALIGN_MODEL"}},
			&cli.StringFlag{Name: "data", Usage: "training pairs `FILE` (.jsonl or .jsonl.zst; - reads standard input and keeps a copy in the run)", EnvVars: []string{"ALIGN_DATA"}},
			&cli.StringFlag{Name: "eval-data", Usage: "held-out pairs `FILE`", EnvVars: []string{"ALIGN_EVAL_DATA"}},
			&cli.Float64Flag{Name: "eval-split", Value: d.EvalSplit, Usage: "fraction of --data held out when --eval-data is absent", EnvVars: []string{"ALIGN_EVAL_SPLIT"}},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "run `DIR`: new or empty (an existing run needs --resume or --force)", EnvVars: []string{"ALIGN_OUT"}},
			&cli.StringFlag{Name: "resume", Usage: "continue the run in `DIR` from its last checkpoint (only --epochs, --max-steps, --threads, --device and --recompute may change)", EnvVars: []string{"ALIGN_RESUME"}},
			&cli.BoolFlag{Name: "force", Usage: "replace the run already in --out (only the files align wrote there are removed)", EnvVars: []string{"ALIGN_FORCE"}},
			&cli.IntFlag{Name: "epochs", Value: d.Epochs, Usage: "passes over the training pairs (may be raised with --resume)", EnvVars: []string{"ALIGN_EPOCHS"}},
			&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "peak learning rate", EnvVars: []string{"ALIGN_LR"}},
			&cli.StringFlag{Name: "schedule", Value: d.Schedule, Usage: "cosine, linear or constant (after warm-up)", EnvVars: []string{"ALIGN_SCHEDULE"}},
			&cli.IntFlag{Name: "warmup-steps", Value: d.WarmupSteps, Usage: "optimiser steps of linear learning-rate warm-up (at most half the run; align says when it shortens it)", EnvVars: []string{"ALIGN_WARMUP_STEPS"}},
			&cli.Float64Flag{Name: "weight-decay", Value: d.WeightDecay, Usage: "AdamW decoupled weight decay of the adapter weights", EnvVars: []string{"ALIGN_WEIGHT_DECAY"}},
			&cli.Float64Flag{Name: "max-grad-norm", Value: d.MaxGradNorm, Usage: "clip the global gradient norm (0: off)", EnvVars: []string{"ALIGN_MAX_GRAD_NORM"}},
			&cli.IntFlag{Name: "grad-accum", Value: d.GradAccum, Usage: "micro-batches per optimiser step", EnvVars: []string{"ALIGN_GRAD_ACCUM"}},
			&cli.IntFlag{Name: "batch-tokens", Value: d.BatchTokens, Usage: "padded tokens per micro-batch (pairs are packed up to it)", EnvVars: []string{"ALIGN_BATCH_TOKENS"}},
			&cli.IntFlag{Name: "max-length", Value: d.MaxLength, Usage: "tokens per sequence; prompts are cut from the left first", EnvVars: []string{"ALIGN_MAX_LENGTH"}},
			&cli.IntFlag{Name: "lora-rank", Value: d.Rank, Usage: "rank r of each LoRA adapter", EnvVars: []string{"ALIGN_LORA_RANK"}},
			&cli.Float64Flag{Name: "lora-alpha", Value: d.Alpha, Usage: "LoRA α: the adapter's output is scaled by α / r", EnvVars: []string{"ALIGN_LORA_ALPHA"}},
			&cli.StringFlag{Name: "lora-targets", Value: strings.Join(d.Targets, ","), Usage: "comma-separated: q,k,v,o,gate,up,down", EnvVars: []string{"ALIGN_LORA_TARGETS"}},
			&cli.StringFlag{Name: "init-adapter", Usage: "start the policy from this LoRA `FILE` (e.g. an SFT run's adapter.gguf) instead of B = 0; takes its rank, alpha and targets", EnvVars: []string{"ALIGN_INIT_ADAPTER"}},
			&cli.StringFlag{Name: "ref-adapter", Usage: "the DPO reference is the base plus this LoRA `FILE`, frozen (e.g. the SFT adapter); the policy starts from it too unless --init-adapter is given", EnvVars: []string{"ALIGN_REF_ADAPTER"}},
			&cli.Float64Flag{Name: "beta", Usage: "β for every objective (overrides the table)", EnvVars: []string{"ALIGN_BETA"}},
			&cli.StringFlag{Name: "beta-table", Usage: "JSON `FILE` mapping objective to β", EnvVars: []string{"ALIGN_BETA_TABLE"}},
			&cli.Float64Flag{Name: "label-smoothing", Usage: "ε of conservative DPO (cdpo defaults to 0.1)", EnvVars: []string{"ALIGN_LABEL_SMOOTHING"}},
			&cli.Float64Flag{Name: "rpo-alpha", Usage: "add α × the chosen response's mean token NLL to the preference loss (RPO); teaches the model to produce the chosen answers, not only to rank them", EnvVars: []string{"ALIGN_RPO_ALPHA"}},
			&cli.StringFlag{Name: "margin-from", Usage: "rm: per-pair margin of the loss: scores (the judge's score gap align rank records) or margin (a number field)", EnvVars: []string{"ALIGN_MARGIN_FROM"}},
			&cli.Float64Flag{Name: "center-coef", Usage: "rm: add this × (r_chosen + r_rejected)² to keep rewards near zero (TRL's center_rewards_coefficient)", EnvVars: []string{"ALIGN_CENTER_COEF"}},
			&cli.IntFlag{Name: "eval-every", Usage: "optimiser steps between held-out evaluations (0: each epoch)", EnvVars: []string{"ALIGN_EVAL_EVERY"}},
			&cli.IntFlag{Name: "save-every", Usage: "optimiser steps between checkpoints (0: each epoch)", EnvVars: []string{"ALIGN_SAVE_EVERY"}},
			&cli.IntFlag{Name: "patience", Usage: "stop after N evaluations without a better held-out margin (0: off)", EnvVars: []string{"ALIGN_PATIENCE"}},
			&cli.IntFlag{Name: "max-steps", Usage: "stop after N optimiser steps (0: all epochs)", EnvVars: []string{"ALIGN_MAX_STEPS"}},
			&cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "seed of the adapter initialisation, the shuffles and --eval-split", EnvVars: []string{"ALIGN_SEED"}},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
			&cli.StringFlag{Name: "device", Value: "auto", Usage: train.DeviceUsage, EnvVars: []string{"ALIGN_DEVICE"}},
			&cli.StringFlag{Name: "backward-weights", Value: "auto", Usage: train.BackwardWeightsUsage, EnvVars: []string{"ALIGN_BACKWARD_WEIGHTS"}},
			&cli.StringFlag{Name: "recompute", Value: "auto", Usage: train.RecomputeUsage, EnvVars: []string{"ALIGN_RECOMPUTE"}},
			&cli.BoolFlag{Name: "skip-invalid", Usage: "skip and count bad pairs instead of failing", EnvVars: []string{"ALIGN_SKIP_INVALID"}},
			&cli.BoolFlag{Name: "raw", Usage: "do not apply the chat template", EnvVars: []string{"ALIGN_RAW"}},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON on stdout", EnvVars: []string{"ALIGN_JSON"}},
		}, rlFlags()...),
		Action: runTrain,
	}
}

// resumeFlags may be given with --resume: they change how far the run goes
// (or only how it runs), not what its steps mean.
var resumeFlags = map[string]bool{"resume": true, "threads": true, "device": true, "recompute": true, "epochs": true, "max-steps": true, "json": true}

// resumeRefusal is the error for a flag given with --resume that may not
// change (train and PPO/GRPO runs alike).
func resumeRefusal(name, dir string) error {
	return usagef("--%s cannot change when resuming: the run keeps the settings in %s (with --resume only --epochs, --max-steps, --threads, --device and --recompute may change)",
		name, filepath.Join(dir, "config.json"))
}

// sameAsRun reports whether flag's value given on the command line is what
// the run in saved already uses (so repeating a setting is no change).
func sameAsRun(c *cli.Context, flag string, saved train.Config, dir string) bool {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	switch flag {
	case "method":
		return strings.ToLower(c.String(flag)) == saved.Method
	case "model":
		return abs(c.String(flag)) == abs(saved.Model)
	case "data":
		return abs(c.String(flag)) == abs(saved.Data)
	case "eval-data":
		return abs(c.String(flag)) == abs(saved.EvalData)
	case "out":
		return abs(c.String(flag)) == abs(dir)
	case "eval-split":
		return c.Float64(flag) == saved.EvalSplit
	case "lr":
		return c.Float64(flag) == saved.LR
	case "schedule":
		return c.String(flag) == saved.Schedule
	case "warmup-steps":
		return c.Int(flag) == saved.WarmupSteps
	case "weight-decay":
		return c.Float64(flag) == saved.WeightDecay
	case "max-grad-norm":
		return c.Float64(flag) == saved.MaxGradNorm
	case "grad-accum":
		return c.Int(flag) == saved.GradAccum
	case "batch-tokens":
		return c.Int(flag) == saved.BatchTokens
	case "max-length":
		return c.Int(flag) == saved.MaxLength
	case "lora-rank":
		return c.Int(flag) == saved.Rank
	case "lora-alpha":
		return c.Float64(flag) == saved.Alpha
	case "lora-targets":
		return c.String(flag) == strings.Join(saved.Targets, ",")
	case "init-adapter":
		return abs(c.String(flag)) == abs(saved.InitAdapter)
	case "ref-adapter":
		return abs(c.String(flag)) == abs(saved.RefAdapter)
	case "beta":
		return c.Float64(flag) == saved.Beta
	case "label-smoothing":
		return c.Float64(flag) == saved.LabelSmoothing
	case "rpo-alpha":
		return c.Float64(flag) == saved.RPOAlpha
	case "margin-from":
		return c.String(flag) == saved.MarginFrom
	case "center-coef":
		return c.Float64(flag) == saved.CenterCoef
	case "eval-every":
		return c.Int(flag) == saved.EvalEvery
	case "save-every":
		return c.Int(flag) == saved.SaveEvery
	case "patience":
		return c.Int(flag) == saved.Patience
	case "seed":
		return c.Uint64(flag) == saved.Seed
	case "skip-invalid":
		return c.Bool(flag) == saved.SkipInvalid
	case "raw":
		return c.Bool(flag) == saved.Raw
	}
	return false // --beta-table, --force: never meaningful on a resume
}

func runTrain(c *cli.Context) error {
	if m := strings.ToLower(c.String("method")); m == "ppo" || m == "grpo" || rl.IsRun(c.String("resume")) {
		return runRL(c)
	}
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("train takes no arguments (got %q)", c.Args().First())
	}
	cfg := train.DefaultConfig()
	if dir := c.String("resume"); dir != "" {
		cfg = train.Config{Out: dir, Resume: true}
		if saved, err := train.LoadRunConfig(dir); err == nil {
			for _, f := range c.Command.Flags {
				name := f.Names()[0]
				if resumeFlags[name] || !c.IsSet(name) || sameAsRun(c, name, saved, dir) {
					continue
				}
				return resumeRefusal(name, dir)
			}
		}
		if c.IsSet("epochs") {
			n := c.Int("epochs")
			cfg.Continue.Epochs = &n
		}
		if c.IsSet("max-steps") {
			n := c.Int("max-steps")
			cfg.Continue.MaxSteps = &n
		}
	} else {
		for _, f := range []string{"model", "data", "out"} {
			if c.String(f) == "" {
				return usagef("--%s is required (or --resume DIR)", f)
			}
		}
		cfg.Method = strings.ToLower(c.String("method"))
		cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = c.String("model"), c.String("data"), c.String("eval-data"), c.String("out")
		cfg.Force, cfg.Stdin = c.Bool("force"), env.Stdin
		cfg.EvalSplit = c.Float64("eval-split")
		cfg.Epochs, cfg.LR, cfg.Schedule = c.Int("epochs"), c.Float64("lr"), c.String("schedule")
		cfg.WarmupSteps, cfg.WeightDecay, cfg.MaxGradNorm = c.Int("warmup-steps"), c.Float64("weight-decay"), c.Float64("max-grad-norm")
		cfg.GradAccum, cfg.BatchTokens, cfg.MaxLength = c.Int("grad-accum"), c.Int("batch-tokens"), c.Int("max-length")
		cfg.Rank, cfg.Alpha = c.Int("lora-rank"), c.Float64("lora-alpha")
		cfg.Targets = strings.Split(c.String("lora-targets"), ",")
		cfg.InitAdapter, cfg.RefAdapter = c.String("init-adapter"), c.String("ref-adapter")
		if cfg.InitAdapter != "" || cfg.RefAdapter != "" {
			// the policy takes the adapter's shape; a --lora-* flag given
			// with it must agree with the file (train.Run checks)
			if !c.IsSet("lora-rank") {
				cfg.Rank = 0
			}
			if !c.IsSet("lora-alpha") {
				cfg.Alpha = 0
			}
			if !c.IsSet("lora-targets") {
				cfg.Targets = nil
			}
		}
		cfg.Beta, cfg.LabelSmoothing, cfg.RPOAlpha = c.Float64("beta"), c.Float64("label-smoothing"), c.Float64("rpo-alpha")
		cfg.MarginFrom, cfg.CenterCoef = strings.ToLower(c.String("margin-from")), c.Float64("center-coef")
		cfg.EvalEvery, cfg.SaveEvery, cfg.Patience, cfg.MaxSteps = c.Int("eval-every"), c.Int("save-every"), c.Int("patience"), c.Int("max-steps")
		cfg.Seed, cfg.SkipInvalid, cfg.Raw = c.Uint64("seed"), c.Bool("skip-invalid"), c.Bool("raw")
		cfg.BackwardWeights = strings.ToLower(c.String("backward-weights"))
		if p := c.String("beta-table"); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return usagef("--beta-table %s: %v", p, err)
			}
			if err := json.Unmarshal(b, &cfg.BetaTable); err != nil {
				return usagef("--beta-table %s: want a JSON object of objective to β: %v", p, err)
			}
		}
	}
	cfg.Threads, cfg.Device, cfg.Recompute = c.Int("threads"), c.String("device"), strings.ToLower(c.String("recompute"))
	if !cfg.Resume {
		if err := cfg.Validate(); err != nil {
			return &UsageError{Err: err}
		}
	}
	pr := &trainProgress{w: env.Stderr, tty: isTerminal(env.Stderr)}
	if pr.tty {
		pr.width = termWidth(env.Stderr)
	}
	res, err := train.Run(c.Context, cfg, pr.event)
	pr.end()
	if err != nil {
		return runError(err)
	}
	if c.Bool("json") {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	fmt.Fprintf(env.Stderr, "align: %s, %d train / %d eval pairs, %.0f tokens/s, %.1fs", plural(res.Steps, "step"), res.TrainPairs, res.EvalPairs, res.TokensPerS, res.ElapsedS)
	if res.Device != "" && !strings.EqualFold(res.Device, "cpu") {
		fmt.Fprintf(env.Stderr, " on %s", res.Device)
	}
	if res.StoppedEarly {
		fmt.Fprint(env.Stderr, ", stopped early (best held-out margin kept)")
	}
	if res.Truncation.PromptsCut+res.Truncation.ResponsesCut > 0 {
		fmt.Fprintf(env.Stderr, ", --max-length cut %s and %s", plural(res.Truncation.PromptsCut, "prompt"), plural(res.Truncation.ResponsesCut, "response"))
	}
	if res.Skipped > 0 {
		fmt.Fprintf(env.Stderr, ", %s skipped", plural(res.Skipped, "invalid pair"))
	}
	fmt.Fprintln(env.Stderr)
	printEval(env.Stdout, "held-out before", res.Before)
	printEval(env.Stdout, "held-out after ", res.After)
	fmt.Fprintf(env.Stdout, "adapter: %s\n", res.Adapter)
	if res.Head != "" {
		fmt.Fprintf(env.Stdout, "head: %s\n", res.Head)
	}
	return nil
}

// plural is "1 step", "2 steps".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// trainProgress draws train.Events on stderr: on a terminal one line
// redrawn in place and clipped to its width; otherwise a line when a pass
// starts or ends and at most every two seconds between.
type trainProgress struct {
	w         io.Writer
	tty       bool
	width     int
	last      time.Time
	lastPhase string
	drawn     bool // a terminal line is open
}

var phaseLabels = map[string]string{"reference": "reference log-probs", "train": "step", "eval": "held-out evaluation"}

func (p *trainProgress) event(ev train.Event) {
	if ev.Note != "" {
		if p.drawn {
			fmt.Fprint(p.w, "\r\033[K")
			p.drawn = false
		}
		fmt.Fprintf(p.w, "align: %s\n", ev.Note)
		return
	}
	if !p.tty {
		if ev.Phase == p.lastPhase && ev.Done != ev.Total && time.Since(p.last) < 2*time.Second {
			return
		}
		p.last, p.lastPhase = time.Now(), ev.Phase
		fmt.Fprintln(p.w, progressLine(ev, 0))
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s", progressLine(ev, p.width))
	p.drawn = true
}

// end closes an open terminal line.
func (p *trainProgress) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// progressLine formats ev; width > 0 clips it to a terminal of that many
// columns (the bar shrinks first, then the end is cut).
func progressLine(ev train.Event, width int) string {
	label := phaseLabels[ev.Phase]
	if label == "" {
		label = ev.Phase
	}
	head := fmt.Sprintf("%s %d/%d", label, ev.Done, ev.Total)
	tail := ""
	if ev.Stats != "" {
		tail = " " + ev.Stats
	}
	if eta := ev.ETA.Round(time.Second); eta > 0 {
		tail += " ETA " + eta.String()
	}
	bar := 24
	if width > 0 {
		bar = min(bar, width-1-utf8.RuneCountInString(head+tail)-3)
	}
	line := head
	if bar >= 5 {
		filled := bar * ev.Done / max(ev.Total, 1)
		line += " [" + strings.Repeat("#", filled) + strings.Repeat(".", bar-filled) + "]"
	}
	line += tail
	if width > 0 {
		if r := []rune(line); len(r) > width-1 {
			line = string(r[:max(width-1, 0)])
		}
	}
	return line
}

// termWidth is the column count of the terminal behind w (COLUMNS, or 80,
// when it cannot be read).
func termWidth(w any) int {
	if f, ok := w.(*os.File); ok {
		var ws struct{ Row, Col, X, Y uint16 }
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws))); e == 0 && ws.Col > 0 {
			return int(ws.Col)
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 80
}

func printEval(w interface{ Write([]byte) (int, error) }, label string, m map[string]float64) {
	if len(m) == 0 {
		return
	}
	_, acc := m["rewards/accuracies"]
	if _, lp := m["logps/chosen"]; acc && !lp { // rm: rewards are the head's, no log-probs
		fmt.Fprintf(w, "%s: loss %.4f  accuracy %.3f  margin %+.4f  rewards chosen %+.4f rejected %+.4f\n",
			label, m["loss"], m["rewards/accuracies"], m["rewards/margins"], m["rewards/chosen"], m["rewards/rejected"])
		return
	}
	if _, ok := m["rewards/accuracies"]; ok {
		fmt.Fprintf(w, "%s: loss %.4f  accuracy %.3f  margin %+.4f  rewards chosen %+.4f rejected %+.4f  logps chosen %.2f rejected %.2f\n",
			label, m["loss"], m["rewards/accuracies"], m["rewards/margins"], m["rewards/chosen"], m["rewards/rejected"], m["logps/chosen"], m["logps/rejected"])
		return
	}
	fmt.Fprintf(w, "%s: loss %.4f  logps chosen %.2f\n", label, m["loss"], m["logps/chosen"])
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runError maps a training run's error to the CLI's exit codes: a bad
// setting is a usage error (2), an interrupted run is resumable (4). PPO and
// GRPO runs (align/rl) share train's ConfigError and ErrInterrupted.
func runError(err error) error {
	var ce *train.ConfigError
	switch {
	case errors.As(err, &ce):
		return &UsageError{Err: err}
	case errors.Is(err, train.ErrInterrupted):
		return &ExitCodeError{Code: ExitResumable, Err: err}
	}
	return err
}
