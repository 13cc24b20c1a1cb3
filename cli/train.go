package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/train"
)

func init() { register(trainCommand) }

func trainCommand() *cli.Command {
	d := train.DefaultConfig()
	return &cli.Command{
		Name:      "train",
		Usage:     "train a LoRA adapter on a frozen GGUF model (SFT, DPO, IPO, cDPO, hinge)",
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

Ctrl-C saves a checkpoint and exits with code 4; --resume OUT continues and
ends with the same adapter as an uninterrupted run.

Example:
   align train --method dpo --model models/tiny-q8_0.gguf --data testdata/pairs/train.jsonl \
      --eval-data testdata/pairs/eval.jsonl --out runs/dpo --epochs 3
   align train --resume runs/dpo`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "method", Value: d.Method, Usage: "sft, dpo, ipo, cdpo or hinge", EnvVars: []string{"ALIGN_METHOD"}},
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "base GGUF model `FILE`", EnvVars: []string{"ALIGN_MODEL"}},
			&cli.StringFlag{Name: "data", Usage: "training pairs `FILE` (.jsonl or .jsonl.zst)", EnvVars: []string{"ALIGN_DATA"}},
			&cli.StringFlag{Name: "eval-data", Usage: "held-out pairs `FILE`", EnvVars: []string{"ALIGN_EVAL_DATA"}},
			&cli.Float64Flag{Name: "eval-split", Value: d.EvalSplit, Usage: "fraction of --data held out when --eval-data is absent", EnvVars: []string{"ALIGN_EVAL_SPLIT"}},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "run `DIR`", EnvVars: []string{"ALIGN_OUT"}},
			&cli.StringFlag{Name: "resume", Usage: "continue the run in `DIR` from its last checkpoint", EnvVars: []string{"ALIGN_RESUME"}},
			&cli.IntFlag{Name: "epochs", Value: d.Epochs, EnvVars: []string{"ALIGN_EPOCHS"}},
			&cli.Float64Flag{Name: "lr", Value: d.LR, Usage: "peak learning rate", EnvVars: []string{"ALIGN_LR"}},
			&cli.StringFlag{Name: "schedule", Value: d.Schedule, Usage: "cosine, linear or constant (after warm-up)", EnvVars: []string{"ALIGN_SCHEDULE"}},
			&cli.IntFlag{Name: "warmup-steps", Value: d.WarmupSteps, EnvVars: []string{"ALIGN_WARMUP_STEPS"}},
			&cli.Float64Flag{Name: "weight-decay", Value: d.WeightDecay, EnvVars: []string{"ALIGN_WEIGHT_DECAY"}},
			&cli.Float64Flag{Name: "max-grad-norm", Value: d.MaxGradNorm, Usage: "clip the global gradient norm (0: off)", EnvVars: []string{"ALIGN_MAX_GRAD_NORM"}},
			&cli.IntFlag{Name: "grad-accum", Value: d.GradAccum, Usage: "micro-batches per optimiser step", EnvVars: []string{"ALIGN_GRAD_ACCUM"}},
			&cli.IntFlag{Name: "batch-tokens", Value: d.BatchTokens, Usage: "padded tokens per micro-batch (pairs are packed up to it)", EnvVars: []string{"ALIGN_BATCH_TOKENS"}},
			&cli.IntFlag{Name: "max-length", Value: d.MaxLength, Usage: "tokens per sequence; prompts are cut from the left first", EnvVars: []string{"ALIGN_MAX_LENGTH"}},
			&cli.IntFlag{Name: "lora-rank", Value: d.Rank, EnvVars: []string{"ALIGN_LORA_RANK"}},
			&cli.Float64Flag{Name: "lora-alpha", Value: d.Alpha, EnvVars: []string{"ALIGN_LORA_ALPHA"}},
			&cli.StringFlag{Name: "lora-targets", Value: strings.Join(d.Targets, ","), Usage: "comma-separated: q,k,v,o,gate,up,down", EnvVars: []string{"ALIGN_LORA_TARGETS"}},
			&cli.Float64Flag{Name: "beta", Usage: "β for every objective (overrides the table)", EnvVars: []string{"ALIGN_BETA"}},
			&cli.StringFlag{Name: "beta-table", Usage: "JSON `FILE` mapping objective to β", EnvVars: []string{"ALIGN_BETA_TABLE"}},
			&cli.Float64Flag{Name: "label-smoothing", Usage: "ε of conservative DPO (cdpo defaults to 0.1)", EnvVars: []string{"ALIGN_LABEL_SMOOTHING"}},
			&cli.Float64Flag{Name: "rpo-alpha", Usage: "add α × the chosen response's mean token NLL to the preference loss (RPO); teaches the model to produce the chosen answers, not only to rank them", EnvVars: []string{"ALIGN_RPO_ALPHA"}},
			&cli.IntFlag{Name: "eval-every", Usage: "optimiser steps between held-out evaluations (0: each epoch)", EnvVars: []string{"ALIGN_EVAL_EVERY"}},
			&cli.IntFlag{Name: "save-every", Usage: "optimiser steps between checkpoints (0: each epoch)", EnvVars: []string{"ALIGN_SAVE_EVERY"}},
			&cli.IntFlag{Name: "patience", Usage: "stop after N evaluations without a better held-out margin (0: off)", EnvVars: []string{"ALIGN_PATIENCE"}},
			&cli.IntFlag{Name: "max-steps", Usage: "stop after N optimiser steps (0: all epochs)", EnvVars: []string{"ALIGN_MAX_STEPS"}},
			&cli.Uint64Flag{Name: "seed", Value: d.Seed, EnvVars: []string{"ALIGN_SEED"}},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
			&cli.BoolFlag{Name: "skip-invalid", Usage: "skip and count bad pairs instead of failing", EnvVars: []string{"ALIGN_SKIP_INVALID"}},
			&cli.BoolFlag{Name: "raw", Usage: "do not apply the chat template", EnvVars: []string{"ALIGN_RAW"}},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON on stdout", EnvVars: []string{"ALIGN_JSON"}},
		},
		Action: runTrain,
	}
}

func runTrain(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("train takes no arguments (got %q)", c.Args().First())
	}
	cfg := train.DefaultConfig()
	if dir := c.String("resume"); dir != "" {
		cfg.Out = dir
		cfg.Resume = true
	} else {
		for _, f := range []string{"model", "data", "out"} {
			if c.String(f) == "" {
				return usagef("--%s is required (or --resume DIR)", f)
			}
		}
		cfg.Method = strings.ToLower(c.String("method"))
		cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = c.String("model"), c.String("data"), c.String("eval-data"), c.String("out")
		cfg.EvalSplit = c.Float64("eval-split")
		cfg.Epochs, cfg.LR, cfg.Schedule = c.Int("epochs"), c.Float64("lr"), c.String("schedule")
		cfg.WarmupSteps, cfg.WeightDecay, cfg.MaxGradNorm = c.Int("warmup-steps"), c.Float64("weight-decay"), c.Float64("max-grad-norm")
		cfg.GradAccum, cfg.BatchTokens, cfg.MaxLength = c.Int("grad-accum"), c.Int("batch-tokens"), c.Int("max-length")
		cfg.Rank, cfg.Alpha = c.Int("lora-rank"), c.Float64("lora-alpha")
		cfg.Targets = strings.Split(c.String("lora-targets"), ",")
		cfg.Beta, cfg.LabelSmoothing, cfg.RPOAlpha = c.Float64("beta"), c.Float64("label-smoothing"), c.Float64("rpo-alpha")
		cfg.EvalEvery, cfg.SaveEvery, cfg.Patience, cfg.MaxSteps = c.Int("eval-every"), c.Int("save-every"), c.Int("patience"), c.Int("max-steps")
		cfg.Seed, cfg.SkipInvalid, cfg.Raw = c.Uint64("seed"), c.Bool("skip-invalid"), c.Bool("raw")
		if p := c.String("beta-table"); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &cfg.BetaTable); err != nil {
				return fmt.Errorf("%s: want a JSON object of objective to β: %w", p, err)
			}
			for k, v := range cfg.BetaTable {
				if !(v > 0) {
					return fmt.Errorf("%s: β for %q must be positive (got %g)", p, k, v)
				}
			}
		}
	}
	cfg.Threads = c.Int("threads")
	tty := isTerminal(env.Stderr)
	last := time.Time{}
	progress := func(line string, final bool) {
		switch {
		case final && tty:
			fmt.Fprintln(env.Stderr)
		case final:
		case tty:
			fmt.Fprintf(env.Stderr, "\r\033[K%s", line)
		case time.Since(last) > 2*time.Second || strings.HasPrefix(line, "reference"):
			fmt.Fprintln(env.Stderr, line)
			last = time.Now()
		}
	}
	res, err := train.Run(c.Context, cfg, progress)
	if err != nil {
		if errors.Is(err, train.ErrInterrupted) {
			if tty {
				fmt.Fprintln(env.Stderr)
			}
			return &ExitCodeError{Code: ExitResumable, Err: err}
		}
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	fmt.Fprintf(env.Stderr, "align: %d steps, %d train / %d eval pairs, %.0f tokens/s, %.1fs", res.Steps, res.TrainPairs, res.EvalPairs, res.TokensPerS, res.ElapsedS)
	if res.StoppedEarly {
		fmt.Fprint(env.Stderr, ", stopped early (best held-out margin kept)")
	}
	if res.Truncation.PromptsCut+res.Truncation.ResponsesCut > 0 {
		fmt.Fprintf(env.Stderr, ", --max-length cut %d prompts and %d responses", res.Truncation.PromptsCut, res.Truncation.ResponsesCut)
	}
	if res.Skipped > 0 {
		fmt.Fprintf(env.Stderr, ", %d invalid pairs skipped", res.Skipped)
	}
	fmt.Fprintln(env.Stderr)
	printEval(env.Stdout, "held-out before", res.Before)
	printEval(env.Stdout, "held-out after ", res.After)
	fmt.Fprintf(env.Stdout, "adapter: %s\n", res.Adapter)
	return nil
}

func printEval(w interface{ Write([]byte) (int, error) }, label string, m map[string]float64) {
	if len(m) == 0 {
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
