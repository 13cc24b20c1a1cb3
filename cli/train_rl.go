package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/rl"
	"github.com/align-dev/align/align/train"
)

// rlFlags are the flags of `align train --method ppo|grpo` that the other
// methods do not have. Flags whose default depends on the method default
// to 0 here, meaning "the method's default".
func rlFlags() []cli.Flag {
	p, g := rl.Defaults(rl.PPO), rl.Defaults(rl.GRPO)
	return []cli.Flag{
		&cli.StringFlag{Name: "prompts", Usage: "ppo/grpo: training prompts `FILE` (JSON Lines of {\"prompt\": text or \"messages\": [...]})", EnvVars: []string{"ALIGN_PROMPTS"}},
		&cli.StringFlag{Name: "eval-prompts", Usage: "ppo/grpo: held-out prompts `FILE` (else --eval-split of --prompts)", EnvVars: []string{"ALIGN_EVAL_PROMPTS"}},
		&cli.StringFlag{Name: "reward", Usage: "ppo/grpo: reward `SPEC`: KIND:TARGET[=WEIGHT],... (rm:DIR, rules:CATALOG.json, contains:PHRASE, local:, openai:, bedrock:)", EnvVars: []string{"ALIGN_REWARD"}},
		&cli.IntFlag{Name: "group", Usage: fmt.Sprintf("ppo/grpo: completions per prompt (0: grpo %d, ppo %d)", g.Group, p.Group), EnvVars: []string{"ALIGN_GROUP"}},
		&cli.IntFlag{Name: "rollout-batch", Usage: fmt.Sprintf("ppo/grpo: prompts per rollout step (0: grpo %d, ppo %d)", g.BatchPrompts, p.BatchPrompts), EnvVars: []string{"ALIGN_ROLLOUT_BATCH"}},
		&cli.IntFlag{Name: "max-new-tokens", Value: p.MaxNewTokens, Usage: "ppo/grpo: tokens sampled per completion", EnvVars: []string{"ALIGN_MAX_NEW_TOKENS"}},
		&cli.Float64Flag{Name: "temperature", Value: p.Temperature, Usage: "ppo/grpo: rollout sampling temperature", EnvVars: []string{"ALIGN_TEMPERATURE"}},
		&cli.Float64Flag{Name: "top-p", Value: p.TopP, Usage: "ppo/grpo: rollout nucleus mass (1: off; truncation makes rollouts off-policy)", EnvVars: []string{"ALIGN_TOP_P"}},
		&cli.IntFlag{Name: "top-k", Value: p.TopK, Usage: "ppo/grpo: rollout top-k (0: off)", EnvVars: []string{"ALIGN_TOP_K"}},
		&cli.Float64Flag{Name: "min-p", Value: p.MinP, Usage: "ppo/grpo: rollout min-p (0: off)", EnvVars: []string{"ALIGN_MIN_P"}},
		&cli.Float64Flag{Name: "value-lr", Usage: "ppo: learning rate of the value head (0: 10 × --lr)", EnvVars: []string{"ALIGN_VALUE_LR"}},
		&cli.IntFlag{Name: "ppo-epochs", Usage: fmt.Sprintf("ppo/grpo: optimisation passes over each rollout batch (0: ppo %d, grpo %d)", p.PPOEpochs, g.PPOEpochs), EnvVars: []string{"ALIGN_PPO_EPOCHS"}},
		&cli.IntFlag{Name: "mini-batches", Value: p.MiniBatches, Usage: "ppo/grpo: optimiser steps per pass over a rollout batch", EnvVars: []string{"ALIGN_MINI_BATCHES"}},
		&cli.Float64Flag{Name: "clip-eps", Value: p.ClipEps, Usage: "ppo/grpo: ε of the clipped surrogate", EnvVars: []string{"ALIGN_CLIP_EPS"}},
		&cli.Float64Flag{Name: "value-clip", Value: p.ClipValue, Usage: "ppo: ε of the clipped value loss", EnvVars: []string{"ALIGN_VALUE_CLIP"}},
		&cli.Float64Flag{Name: "gamma", Value: p.Gamma, Usage: "ppo: GAE discount γ", EnvVars: []string{"ALIGN_GAMMA"}},
		&cli.Float64Flag{Name: "lambda", Value: p.Lambda, Usage: "ppo: GAE λ", EnvVars: []string{"ALIGN_LAMBDA"}},
		&cli.Float64Flag{Name: "kl-coef", Value: p.KLCoef, Usage: "ppo: per-token KL penalty to the reference in the reward", EnvVars: []string{"ALIGN_KL_COEF"}},
		&cli.Float64Flag{Name: "kl-target", Usage: "ppo: adapt --kl-coef towards this per-sequence KL (0: fixed)", EnvVars: []string{"ALIGN_KL_TARGET"}},
		&cli.Float64Flag{Name: "kl-horizon", Value: p.KLHorizon, Usage: "ppo: horizon (sequences) of the adaptive KL controller", EnvVars: []string{"ALIGN_KL_HORIZON"}},
		&cli.BoolFlag{Name: "no-std", Usage: "grpo: do not divide advantages by the group's std; normalise by a constant (Dr. GRPO)", EnvVars: []string{"ALIGN_NO_STD"}},
		&cli.Float64Flag{Name: "max-kl", Usage: "ppo/grpo: stop when a step's KL exceeds this (ppo: per-sequence sum; grpo: per-token k3 mean; 0: off)", EnvVars: []string{"ALIGN_MAX_KL"}},
		&cli.IntFlag{Name: "eval-samples", Value: p.EvalSamples, Usage: "ppo/grpo: completions per held-out prompt", EnvVars: []string{"ALIGN_EVAL_SAMPLES"}},
	}
}

// rlResumeFlags may be given with --resume of a PPO or GRPO run.
var rlResumeFlags = map[string]bool{"resume": true, "threads": true, "device": true, "recompute": true, "epochs": true, "max-steps": true, "json": true, "method": true}

// runRL is `align train --method ppo|grpo`.
func runRL(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("train takes no arguments (got %q)", c.Args().First())
	}
	method := strings.ToLower(c.String("method"))
	var cfg rl.Config
	if dir := c.String("resume"); dir != "" {
		cfg = rl.Config{Out: dir, Resume: true}
		for _, f := range c.Command.Flags {
			name := f.Names()[0]
			if c.IsSet(name) && !rlResumeFlags[name] {
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
		for _, f := range []string{"model", "prompts", "reward", "out"} {
			if c.String(f) == "" {
				return usagef("--%s is required for --method %s (or --resume DIR)", f, method)
			}
		}
		if c.IsSet("data") || c.IsSet("eval-data") {
			return usagef("--method %s reads prompts: use --prompts and --eval-prompts, not --data/--eval-data", method)
		}
		cfg = rl.Defaults(method)
		cfg.Model, cfg.Prompts, cfg.EvalPrompts, cfg.Out = c.String("model"), c.String("prompts"), c.String("eval-prompts"), c.String("out")
		cfg.Reward, cfg.Force = c.String("reward"), c.Bool("force")
		cfg.EvalSplit, cfg.Epochs, cfg.LR = c.Float64("eval-split"), c.Int("epochs"), c.Float64("lr")
		if c.IsSet("schedule") {
			cfg.Schedule = c.String("schedule")
		}
		if c.IsSet("warmup-steps") {
			cfg.WarmupSteps = c.Int("warmup-steps")
		}
		cfg.MaxGradNorm, cfg.MaxLength = c.Float64("max-grad-norm"), c.Int("max-length")
		cfg.Rank, cfg.Alpha = c.Int("lora-rank"), c.Float64("lora-alpha")
		cfg.Targets = strings.Split(c.String("lora-targets"), ",")
		for name, dst := range map[string]*int{"group": &cfg.Group, "rollout-batch": &cfg.BatchPrompts, "ppo-epochs": &cfg.PPOEpochs} {
			if c.IsSet(name) || c.Int(name) != 0 {
				*dst = c.Int(name)
			}
		}
		cfg.MaxNewTokens = c.Int("max-new-tokens")
		cfg.Temperature, cfg.TopP, cfg.TopK, cfg.MinP = c.Float64("temperature"), c.Float64("top-p"), c.Int("top-k"), c.Float64("min-p")
		cfg.ValueLR, cfg.MiniBatches = c.Float64("value-lr"), c.Int("mini-batches")
		cfg.ClipEps, cfg.ClipValue, cfg.Gamma, cfg.Lambda = c.Float64("clip-eps"), c.Float64("value-clip"), c.Float64("gamma"), c.Float64("lambda")
		cfg.KLCoef, cfg.KLTarget, cfg.KLHorizon = c.Float64("kl-coef"), c.Float64("kl-target"), c.Float64("kl-horizon")
		cfg.Beta, cfg.NoStd, cfg.MaxKL = c.Float64("beta"), c.Bool("no-std"), c.Float64("max-kl")
		cfg.EvalEvery, cfg.SaveEvery, cfg.MaxSteps = c.Int("eval-every"), c.Int("save-every"), c.Int("max-steps")
		cfg.EvalSamples, cfg.Seed, cfg.Raw = c.Int("eval-samples"), c.Uint64("seed"), c.Bool("raw")
		cfg.BackwardWeights = strings.ToLower(c.String("backward-weights"))
		if c.IsSet("beta") && method == rl.PPO {
			return usagef("--beta is GRPO's KL weight; PPO's KL penalty is --kl-coef")
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
	cfg.Progress = func(ev rl.Event) {
		pr.event(train.Event{Phase: ev.Phase, Done: ev.Done, Total: ev.Total, Stats: ev.Stats, Note: ev.Note})
	}
	res, err := rl.Run(c.Context, cfg)
	pr.end()
	if err != nil {
		return runError(err)
	}
	if c.Bool("json") {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	fmt.Fprintf(env.Stderr, "align: %s %s, %d train / %d held-out prompts, %.1fs", strings.ToUpper(res.Method), plural(res.Steps, "step"),
		res.TrainPrompts, res.EvalPrompts, res.ElapsedS)
	if res.Device != "" && !strings.EqualFold(res.Device, "cpu") {
		fmt.Fprintf(env.Stderr, " on %s", res.Device)
	}
	if res.StoppedEarly {
		fmt.Fprint(env.Stderr, ", stopped early (--max-kl)")
	}
	if res.PromptsCut > 0 {
		fmt.Fprintf(env.Stderr, ", --max-length cut %s", plural(res.PromptsCut, "prompt"))
	}
	fmt.Fprintln(env.Stderr)
	for _, e := range []struct {
		label string
		m     map[string]float64
	}{{"held-out before", res.Before}, {"held-out after ", res.After}} {
		if len(e.m) > 0 {
			fmt.Fprintf(env.Stdout, "%s: reward %.4f (std %.4f)  kl %.4f  mean length %.1f\n", e.label, e.m["reward"], e.m["reward_std"], e.m["kl"], e.m["completions/mean_length"])
		}
	}
	fmt.Fprintf(env.Stdout, "adapter: %s\n", res.Adapter)
	return nil
}
