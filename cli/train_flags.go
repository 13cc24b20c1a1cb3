package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/rl"
	harness "github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/train"
)

// `align train`'s flags are one table: each row is the flag (its help, its
// ALIGN_* variable, its category), the methods it applies to, whether it
// may be given with --resume, and the config field it fills. The table
// generates the []cli.Flag, fills the config of every method, refuses a
// flag its method does not use (exit 2, naming flag and method) and
// decides what a resume accepts: a resumable flag, or any flag whose value
// is what the run already uses (a repeated --model, an exported ALIGN_*).

// Flag categories, as `align train --help` groups them.
const (
	catRun    = "RUN"
	catLoRA   = "LORA"
	catPref   = "PREFERENCE (DPO family)"
	catRM     = "REWARD MODEL (--method rm)"
	catKTO    = "KTO (--method kto)"
	catRL     = "PPO / GRPO"
	catDevice = "DEVICE"
)

// job is the configuration a command line fills: train's or rl's.
type job struct {
	method string
	t      train.Config
	r      rl.Config
}

// rl reports whether align/rl runs j's method (a rollout method or
// online DPO; an unknown method is train's, which refuses it).
func (j *job) rl() bool {
	k := objective.KindOf(j.method)
	return k == objective.Rollout || k == objective.Online
}

func (j *job) common() *harness.Common {
	if j.rl() {
		return &j.r.Common
	}
	return &j.t.Common
}

// newJob is a job for method with that method's defaults.
func newJob(method string) *job {
	j := &job{method: method}
	if j.rl() {
		j.r = rl.Defaults(method)
	} else {
		j.t = train.Defaults(method)
	}
	return j
}

// trainFlag is one row of the table.
type trainFlag struct {
	flag cli.Flag
	// methods it applies to (nil: every method)
	methods []string
	// resumable: may change with --resume (how far the run goes, where it runs)
	resumable bool
	// field is the config field it fills (nil: read by the command itself)
	field func(j *job) any
	// path: a file or folder, stored absolute
	path bool
	// hint follows a refusal for a method it does not apply to
	hint string
}

// The method lists the table keys on, from align/objective's registry.
var (
	allMethods   = objective.Names()
	trainMethods = objective.Names(objective.Dataset) // read --data
	rlMethods    = objective.Names(objective.Rollout) // PPO and GRPO: --prompts, --reward
	prefMethods  = objective.Where(func(m objective.Method) bool { return m.Preference })
	// betaMethods take --beta; tableMethods read β per objective
	// (--beta-table); refMethods have a reference (--ref-adapter); the
	// reward model trains a set of its own (no --init-adapter)
	betaMethods   = objective.Where(func(m objective.Method) bool { return m.Beta != "" })
	tableMethods  = objective.Where(func(m objective.Method) bool { return m.BetaTable })
	refMethods    = objective.Where(func(m objective.Method) bool { return m.Reference != objective.RefNever })
	policyMethods = objective.Where(func(m objective.Method) bool { return m.Name != train.RM })
)

// orList is "a, b or c"; andList "a, b and c".
func orList(names []string) string  { return joinLast(names, " or ") }
func andList(names []string) string { return joinLast(names, " and ") }

func joinLast(names []string, last string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + last + names[len(names)-1]
}

// methodUsage is --method's help: every method of the registry and the
// inputs of those that are not dataset methods.
func methodUsage() string {
	sampled := objective.Names(objective.Online, objective.Rollout)
	return fmt.Sprintf("%s (see Methods above); %s train on --prompts and a --reward (%s: or a --judge) instead of --data",
		orList(allMethods), andList(sampled), orList(objective.Names(objective.Online)))
}

// scoreUsage is what --patience watches for each method, from the
// registry: the default method's score, then the others with their
// methods ("margin; sft, orpo: loss; ...").
func scoreUsage() string {
	def, _ := objective.Lookup(train.DPO)
	parts := []string{string(def.Score)}
	var scores []objective.Score
	by := map[objective.Score][]string{}
	for _, m := range objective.Methods() {
		if m.Score == def.Score {
			continue
		}
		if _, ok := by[m.Score]; !ok {
			scores = append(scores, m.Score)
		}
		by[m.Score] = append(by[m.Score], m.Name)
	}
	for _, sc := range scores {
		parts = append(parts, strings.Join(by[sc], ", ")+": "+string(sc))
	}
	return strings.Join(parts, "; ")
}

// betaUsage is --beta's help and its default: what β is to each method
// that takes it, from the registry, and each method's default.
func betaUsage() (usage, defaults string) {
	var parts, defs, meanings []string
	byMeaning := map[string][]string{}
	table := false
	for _, m := range objective.Methods() {
		if m.Beta == "" {
			continue
		}
		if _, ok := byMeaning[m.Beta]; !ok {
			meanings = append(meanings, m.Beta)
		}
		byMeaning[m.Beta] = append(byMeaning[m.Beta], m.Name)
		if m.BetaTable {
			table = true
			continue
		}
		j := newJob(m.Name)
		b := j.t.Beta
		if j.rl() {
			b = j.r.Beta
		}
		defs = append(defs, fmt.Sprintf("%s %g", m.Name, b))
	}
	for _, mean := range meanings {
		parts = append(parts, strings.Join(byMeaning[mean], ", ")+": "+mean)
	}
	if table {
		defs = append([]string{"0: the table"}, defs...)
	}
	return strings.Join(parts, "; "), strings.Join(defs, "; ")
}

func env(name string) []string {
	return []string{"ALIGN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

func trainFlags() []trainFlag {
	d, p, g := train.DefaultConfig(), rl.Defaults(rl.PPO), rl.Defaults(rl.GRPO)
	op, sp := train.Defaults(train.ORPO), train.Defaults(train.SimPO)
	str := func(name, usage, cat string) *cli.StringFlag {
		return &cli.StringFlag{Name: name, Usage: usage, Category: cat, EnvVars: env(name)}
	}
	num := func(name string, v float64, usage, cat string) *cli.Float64Flag {
		return &cli.Float64Flag{Name: name, Value: v, Usage: usage, Category: cat, EnvVars: env(name)}
	}
	integer := func(name string, v int, usage, cat string) *cli.IntFlag {
		return &cli.IntFlag{Name: name, Value: v, Usage: usage, Category: cat, EnvVars: env(name)}
	}
	boolean := func(name, usage, cat string) *cli.BoolFlag {
		return &cli.BoolFlag{Name: name, Usage: usage, Category: cat, EnvVars: env(name)}
	}
	c := func(f func(c *harness.Common) any) func(j *job) any { return func(j *job) any { return f(j.common()) } }
	t := func(f func(t *train.Config) any) func(j *job) any { return func(j *job) any { return f(&j.t) } }
	r := func(f func(r *rl.Config) any) func(j *job) any { return func(j *job) any { return f(&j.r) } }
	rlOnly := "it applies to --method " + andList(rlMethods)
	betaHelp, betaDefaults := betaUsage()
	return withOnline([]trainFlag{
		// run
		{flag: &cli.StringFlag{Name: "method", Usage: methodUsage(), DefaultText: train.DPO, Category: catRun, EnvVars: env("method")},
			field: c(func(c *harness.Common) any { return &c.Method })},
		{flag: &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "base GGUF model `FILE`", Category: catRun, EnvVars: env("model")},
			path: true, field: c(func(c *harness.Common) any { return &c.Model })},
		{flag: str("data", "training pairs `FILE` (.jsonl, .jsonl.zst or .parquet; kto also reads unpaired examples; - reads standard input and keeps a copy in the run)", catRun),
			methods: trainMethods, path: true, field: t(func(t *train.Config) any { return &t.Data }),
			hint: "it reads prompts: use --prompts and --eval-prompts"},
		{flag: str("eval-data", "held-out pairs `FILE`", catRun), methods: trainMethods, path: true,
			field: t(func(t *train.Config) any { return &t.EvalData }), hint: "it reads prompts: use --prompts and --eval-prompts"},
		{flag: num("eval-split", d.EvalSplit, "fraction of --data (or --prompts) held out when --eval-data (--eval-prompts) is absent", catRun),
			field: c(func(c *harness.Common) any { return &c.EvalSplit })},
		{flag: &cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "run `DIR`: new or empty (an existing run needs --resume or --force)", Category: catRun, EnvVars: env("out")},
			path: true, field: c(func(c *harness.Common) any { return &c.Out })},
		{flag: str("resume", "continue the run in `DIR` from its last checkpoint (only --epochs, --max-steps, --threads, --device and --recompute may change)", catRun), resumable: true},
		{flag: boolean("force", "replace the run already in --out (only the files align wrote there are removed)", catRun),
			field: c(func(c *harness.Common) any { return &c.Force })},
		{flag: integer("epochs", d.Epochs, "passes over the training data (may be raised with --resume)", catRun), resumable: true,
			field: c(func(c *harness.Common) any { return &c.Epochs })},
		{flag: num("lr", d.LR, "peak learning rate", catRun), field: c(func(c *harness.Common) any { return &c.LR })},
		{flag: &cli.StringFlag{Name: "schedule", Usage: "cosine, linear or constant (after warm-up)", DefaultText: fmt.Sprintf("%s; ppo, grpo: %s", d.Schedule, p.Schedule), Category: catRun, EnvVars: env("schedule")},
			field: c(func(c *harness.Common) any { return &c.Schedule })},
		{flag: &cli.IntFlag{Name: "warmup-steps", Usage: "optimiser steps of linear learning-rate warm-up (at most half the run; align says when it shortens it)", DefaultText: fmt.Sprintf("%d; ppo, grpo: %d", d.WarmupSteps, p.WarmupSteps), Category: catRun, EnvVars: env("warmup-steps")},
			field: c(func(c *harness.Common) any { return &c.WarmupSteps })},
		{flag: num("weight-decay", d.WeightDecay, "AdamW decoupled weight decay of the adapter weights", catRun), field: c(func(c *harness.Common) any { return &c.WeightDecay })},
		{flag: num("max-grad-norm", d.MaxGradNorm, "clip the global gradient norm (0: off)", catRun), field: c(func(c *harness.Common) any { return &c.MaxGradNorm })},
		{flag: integer("grad-accum", d.GradAccum, "micro-batches per optimiser step", catRun), methods: trainMethods,
			field: t(func(t *train.Config) any { return &t.GradAccum }), hint: "a rollout step's optimiser steps are --mini-batches"},
		{flag: integer("batch-tokens", d.BatchTokens, "padded tokens per micro-batch (pairs are packed up to it)", catRun), methods: trainMethods,
			field: t(func(t *train.Config) any { return &t.BatchTokens }), hint: "rollouts are batched by --rollout-batch and --group"},
		{flag: integer("max-length", d.MaxLength, "tokens per sequence; prompts are cut from the left first", catRun), field: c(func(c *harness.Common) any { return &c.MaxLength })},
		{flag: integer("eval-every", 0, "steps between held-out evaluations (0: each epoch)", catRun), field: c(func(c *harness.Common) any { return &c.EvalEvery })},
		{flag: integer("save-every", 0, "steps between checkpoints (0: each epoch)", catRun), field: c(func(c *harness.Common) any { return &c.SaveEvery })},
		{flag: integer("patience", 0, "stop after N held-out evaluations without a better score ("+scoreUsage()+") and keep the best adapter (0: off)", catRun),
			field: c(func(c *harness.Common) any { return &c.Patience })},
		{flag: integer("max-steps", 0, "stop after N steps (0: all epochs)", catRun), resumable: true, field: c(func(c *harness.Common) any { return &c.MaxSteps })},
		{flag: &cli.Uint64Flag{Name: "seed", Value: d.Seed, Usage: "seed of the adapter initialisation, the shuffles, the rollouts and --eval-split", Category: catRun, EnvVars: env("seed")},
			field: c(func(c *harness.Common) any { return &c.Seed })},
		{flag: boolean("skip-invalid", "skip and count bad pairs instead of failing", catRun), methods: trainMethods,
			field: t(func(t *train.Config) any { return &t.SkipInvalid })},
		{flag: boolean("raw", "do not apply the chat template", catRun), field: c(func(c *harness.Common) any { return &c.Raw })},
		{flag: str("chat-template", "render conversations with the Jinja chat template in `FILE` instead of the model's", catRun), path: true, field: c(func(c *harness.Common) any { return &c.ChatTemplate })},
		{flag: str("chat-template-kwargs", "extra template variables: `KEY=VALUE,...` or a JSON object (e.g. enable_thinking=false)", catRun), field: c(func(c *harness.Common) any { return &c.ChatTemplateKwargs })},
		{flag: boolean("json", "print the summary as JSON on stdout", catRun), resumable: true},
		// LoRA
		{flag: integer("lora-rank", d.Rank, "rank r of each LoRA adapter", catLoRA), field: c(func(c *harness.Common) any { return &c.Rank })},
		{flag: num("lora-alpha", d.Alpha, "LoRA α: the adapter's output is scaled by α / r", catLoRA), field: c(func(c *harness.Common) any { return &c.Alpha })},
		{flag: &cli.StringFlag{Name: "lora-targets", Value: strings.Join(d.Targets, ","), Usage: "comma-separated: q,k,v,o,gate,up,down", Category: catLoRA, EnvVars: env("lora-targets")},
			field: c(func(c *harness.Common) any { return &c.Targets })},
		{flag: str("init-adapter", "start the policy from this LoRA `FILE` (e.g. an SFT run's adapter.gguf) instead of B = 0; takes its rank, alpha and targets", catLoRA),
			methods: policyMethods, path: true,
			field: c(func(c *harness.Common) any { return &c.InitAdapter }), hint: "the reward model trains a set of its own"},
		{flag: str("ref-adapter", "the reference (DPO, PPO/GRPO KL) is the base plus this LoRA `FILE`, frozen (e.g. the SFT adapter); the policy starts from it too unless --init-adapter is given", catLoRA),
			methods: refMethods, path: true, field: c(func(c *harness.Common) any { return &c.RefAdapter }),
			hint: "it has no reference"},
		// preference
		{flag: &cli.Float64Flag{Name: "beta", Usage: betaHelp, DefaultText: betaDefaults, Category: catPref, EnvVars: env("beta")},
			methods: betaMethods, field: func(j *job) any {
				if j.rl() {
					return &j.r.Beta
				}
				return &j.t.Beta
			}, hint: "PPO's KL penalty is --kl-coef, ORPO's weight --orpo-lambda"},
		{flag: str("beta-table", "JSON `FILE` mapping objective to β", catPref), methods: tableMethods, path: true,
			field: t(func(t *train.Config) any { return &t.BetaTable })},
		{flag: num("label-smoothing", 0, "ε of conservative DPO (cdpo defaults to 0.1) and of simpo", catPref), methods: []string{train.DPO, train.CDPO, train.SimPO},
			field: t(func(t *train.Config) any { return &t.LabelSmoothing })},
		{flag: num("rpo-alpha", 0, "add α × the chosen response's mean token NLL to the preference loss (RPO); teaches the model to produce the chosen answers, not only to rank them", catPref),
			methods: append(slices.Clone(prefMethods), train.SimPO), field: t(func(t *train.Config) any { return &t.RPOAlpha })},
		{flag: num("orpo-lambda", op.ORPOLambda, "orpo: λ, the weight of the odds-ratio term against the chosen response's NLL (TRL's ORPOConfig beta)", catPref),
			methods: []string{train.ORPO}, field: t(func(t *train.Config) any { return &t.ORPOLambda })},
		{flag: num("simpo-gamma", sp.SimPOGamma, "simpo: target reward margin γ, in reward units (TRL's simpo_gamma; the SimPO repository's gamma_beta_ratio is γ/β)", catPref),
			methods: []string{train.SimPO}, field: t(func(t *train.Config) any { return &t.SimPOGamma })},
		// reward model
		{flag: str("margin-from", "per-pair margin of the loss: scores (the judge's score gap align rank records) or margin (a number field)", catRM),
			methods: []string{train.RM}, field: t(func(t *train.Config) any { return &t.MarginFrom })},
		{flag: num("center-coef", 0, "add this × (r_chosen + r_rejected)² to keep rewards near zero (TRL's center_rewards_coefficient)", catRM),
			methods: []string{train.RM}, field: t(func(t *train.Config) any { return &t.CenterCoef })},
		// KTO
		{flag: num("desirable-weight", d.DesirableWeight, "λ_D, the weight of the desirable examples' loss (keep λ_D·n_D / (λ_U·n_U) in [1, 4/3]; align says when it is not)", catKTO),
			methods: []string{train.KTO}, field: t(func(t *train.Config) any { return &t.DesirableWeight })},
		{flag: num("undesirable-weight", d.UndesirableWeight, "λ_U, the weight of the undesirable examples' loss", catKTO),
			methods: []string{train.KTO}, field: t(func(t *train.Config) any { return &t.UndesirableWeight })},
		// PPO / GRPO
		{flag: str("prompts", "training prompts `FILE` (JSON Lines of {\"prompt\": text or \"messages\": [...]})", catRL), methods: rlMethods, path: true,
			field: r(func(r *rl.Config) any { return &r.Prompts }), hint: "it reads pairs: use --data and --eval-data"},
		{flag: str("eval-prompts", "held-out prompts `FILE` (else --eval-split of --prompts)", catRL), methods: rlMethods, path: true,
			field: r(func(r *rl.Config) any { return &r.EvalPrompts }), hint: "it reads pairs: use --data and --eval-data"},
		{flag: str("reward", "reward `SPEC`: KIND:TARGET[=WEIGHT],... (rm:DIR, rules:CATALOG.json, contains:PHRASE, local:, openai:, bedrock:)", catRL), methods: rlMethods,
			field: r(func(r *rl.Config) any { return &r.Reward })},
		{flag: &cli.IntFlag{Name: "group", Usage: fmt.Sprintf("completions per prompt (at most %d per rollout step: --rollout-batch × --group)", rl.MaxGroup), DefaultText: fmt.Sprintf("grpo %d, ppo %d", g.Group, p.Group), Category: catRL, EnvVars: env("group")},
			methods: rlMethods, field: r(func(r *rl.Config) any { return &r.Group })},
		{flag: &cli.IntFlag{Name: "rollout-batch", Usage: "prompts per rollout step", DefaultText: fmt.Sprintf("grpo %d, ppo %d", g.BatchPrompts, p.BatchPrompts), Category: catRL, EnvVars: env("rollout-batch")},
			methods: rlMethods, field: r(func(r *rl.Config) any { return &r.BatchPrompts })},
		{flag: integer("max-new-tokens", p.MaxNewTokens, "tokens sampled per completion", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.MaxNewTokens })},
		{flag: num("temperature", p.Temperature, "rollout sampling temperature", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.Temperature })},
		{flag: num("top-p", p.TopP, "rollout nucleus mass (1: off; truncation makes rollouts off-policy)", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.TopP })},
		{flag: integer("top-k", p.TopK, "rollout top-k (0: off)", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.TopK })},
		{flag: num("min-p", p.MinP, "rollout min-p (0: off)", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.MinP })},
		{flag: &cli.IntFlag{Name: "ppo-epochs", Usage: "optimisation passes over each rollout batch", DefaultText: fmt.Sprintf("ppo %d, grpo %d", p.PPOEpochs, g.PPOEpochs), Category: catRL, EnvVars: env("ppo-epochs")},
			methods: rlMethods, field: r(func(r *rl.Config) any { return &r.PPOEpochs })},
		{flag: integer("mini-batches", p.MiniBatches, "optimiser steps per pass over a rollout batch", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.MiniBatches })},
		{flag: num("clip-eps", p.ClipEps, "ε of the clipped surrogate", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.ClipEps })},
		{flag: num("max-kl", 0, "stop when a step's KL exceeds this (ppo: per-sequence sum; grpo: per-token k3 mean; 0: off)", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.MaxKL })},
		{flag: integer("eval-samples", p.EvalSamples, "completions per held-out prompt", catRL), methods: rlMethods, field: r(func(r *rl.Config) any { return &r.EvalSamples })},
		{flag: num("value-lr", 0, "ppo: learning rate of the value head (0: 10 × --lr)", catRL), methods: []string{rl.PPO}, field: r(func(r *rl.Config) any { return &r.ValueLR }), hint: rlOnly + " (ppo only)"},
		{flag: num("value-clip", p.ClipValue, "ppo: ε of the clipped value loss", catRL), methods: []string{rl.PPO}, field: r(func(r *rl.Config) any { return &r.ClipValue })},
		{flag: num("gamma", p.Gamma, "ppo: GAE discount γ", catRL), methods: []string{rl.PPO}, field: r(func(r *rl.Config) any { return &r.Gamma })},
		{flag: num("lambda", p.Lambda, "ppo: GAE λ", catRL), methods: []string{rl.PPO}, field: r(func(r *rl.Config) any { return &r.Lambda })},
		{flag: num("kl-coef", p.KLCoef, "ppo: per-token KL penalty to the reference in the reward", catRL), methods: []string{rl.PPO},
			field: r(func(r *rl.Config) any { return &r.KLCoef }), hint: "GRPO's KL weight is --beta"},
		{flag: num("kl-target", 0, "ppo: adapt --kl-coef towards this per-sequence KL (0: fixed)", catRL), methods: []string{rl.PPO},
			field: r(func(r *rl.Config) any { return &r.KLTarget }), hint: "GRPO's KL weight is --beta"},
		{flag: num("kl-horizon", p.KLHorizon, "ppo: horizon (sequences) of the adaptive KL controller", catRL), methods: []string{rl.PPO},
			field: r(func(r *rl.Config) any { return &r.KLHorizon })},
		{flag: boolean("no-std", "grpo: do not divide advantages by the group's std; normalise by a constant (Dr. GRPO)", catRL), methods: []string{rl.GRPO},
			field: r(func(r *rl.Config) any { return &r.NoStd }), hint: "PPO whitens its advantages"},
		// device
		{flag: integer("threads", 0, "CPU threads (0: all cores)", catDevice), resumable: true, field: c(func(c *harness.Common) any { return &c.Threads })},
		{flag: &cli.StringFlag{Name: "device", Value: "auto", Usage: harness.DeviceUsage, Category: catDevice, EnvVars: env("device")}, resumable: true,
			field: c(func(c *harness.Common) any { return &c.Device })},
		{flag: &cli.StringFlag{Name: "backward-weights", Value: "auto", Usage: harness.BackwardWeightsUsage, Category: catDevice, EnvVars: env("backward-weights")},
			field: c(func(c *harness.Common) any { return &c.BackwardWeights })},
		{flag: &cli.StringFlag{Name: "recompute", Value: "auto", Usage: harness.RecomputeUsage, Category: catDevice, EnvVars: env("recompute")}, resumable: true,
			field: c(func(c *harness.Common) any { return &c.Recompute })},
	})
}

// cliFlags is the table's []cli.Flag.
func cliFlags(rows []trainFlag) []cli.Flag {
	out := make([]cli.Flag, len(rows))
	for i, r := range rows {
		out[i] = r.flag
	}
	return out
}

func (f trainFlag) name() string { return f.flag.Names()[0] }

// applies reports whether f applies to method.
func (f trainFlag) applies(method string) bool {
	return f.methods == nil || slices.Contains(f.methods, method)
}

// refusal is the usage error for f given with a method it does not apply to.
func (f trainFlag) refusal(c *cli.Context, method string) error {
	msg := fmt.Sprintf("--%s does not apply to --method %s", f.name(), method)
	if f.hint != "" {
		msg += " (" + f.hint + ")"
	} else if len(f.methods) > 0 {
		msg += fmt.Sprintf(" (it applies to --method %s)", strings.Join(f.methods, ", "))
	}
	if ev := envSet(c, f); ev != "" {
		msg += "; it is set by " + ev
	}
	return usagef("%s", msg)
}

// envSet names the ALIGN_* variable that set f when the command line did not.
func envSet(c *cli.Context, f trainFlag) string {
	for _, a := range os.Args[1:] {
		if a == "--"+f.name() || strings.HasPrefix(a, "--"+f.name()+"=") {
			return ""
		}
	}
	if ev, ok := f.flag.(interface{ GetEnvVars() []string }); ok {
		for _, e := range ev.GetEnvVars() {
			if os.Getenv(e) != "" {
				return e
			}
		}
	}
	return ""
}

// fill writes f's value from the command line into j's field.
func (f trainFlag) fill(c *cli.Context, j *job) error {
	if f.field == nil {
		return nil
	}
	name := f.name()
	switch p := f.field(j).(type) {
	case *string:
		v := c.String(name)
		if f.path && v != "" && v != "-" {
			v = harness.MustAbs(v)
		}
		if name == "method" || name == "recompute" || name == "backward-weights" {
			v = strings.ToLower(v)
		}
		*p = v
	case *int:
		*p = c.Int(name)
	case *uint64:
		*p = c.Uint64(name)
	case *float64:
		*p = c.Float64(name)
	case **float64: // --max-usd: absent is no cap
		if !c.IsSet(name) {
			return nil
		}
		v := c.Float64(name)
		*p = &v
	case *bool:
		*p = c.Bool(name)
	case *[]string:
		*p = strings.Split(c.String(name), ",")
	case *map[string]float64: // --beta-table FILE
		path := c.String(name)
		b, err := os.ReadFile(path)
		if err != nil {
			return usagef("--%s %s: %v", name, path, err)
		}
		if err := json.Unmarshal(b, p); err != nil {
			return usagef("--%s %s: want a JSON object of objective to β: %v", name, path, err)
		}
	default:
		return fmt.Errorf("cli: flag --%s fills a %T", name, p)
	}
	return nil
}

// sameAsRun reports whether f's value on the command line is what the run
// saved in j already uses (repeating a setting is no change).
func (f trainFlag) sameAsRun(c *cli.Context, saved *job, dir string) bool {
	if f.field == nil {
		return false
	}
	if f.name() == "out" {
		return harness.MustAbs(c.String("out")) == harness.MustAbs(dir)
	}
	if f.name() == "method" {
		return strings.ToLower(c.String("method")) == saved.method
	}
	given := newJob(saved.method)
	if err := f.fill(c, given); err != nil {
		return false
	}
	if given.rl() && given.r.AbsSpecs() != nil { // the run stores its specs' paths absolute
		return false
	}
	return reflect.DeepEqual(reflect.ValueOf(f.field(given)).Elem().Interface(), reflect.ValueOf(f.field(saved)).Elem().Interface())
}

// resumeRefusal is the error for a flag given with --resume that may not
// change (train and PPO/GRPO runs alike).
func resumeRefusal(name, dir string) error {
	return usagef("--%s cannot change when resuming: the run keeps the settings in %s (with --resume only --epochs, --max-steps, --threads, --device and --recompute may change)",
		name, filepath.Join(dir, "config.json"))
}

// trainJob is the configuration of `align train`'s command line: a new run
// of its method with the defaults and the flags given, or a resume of the
// run in --resume with what it may change. Every refusal is a usage error.
func trainJob(c *cli.Context, rows []trainFlag) (*job, error) {
	if c.NArg() > 0 {
		return nil, usagef("train takes no arguments (got %q)", c.Args().First())
	}
	if dir := c.String("resume"); dir != "" {
		return resumeJob(c, rows, dir)
	}
	method := strings.ToLower(c.String("method"))
	if method == "" {
		method = train.DPO
	}
	if !slices.Contains(allMethods, method) {
		return nil, usagef("--method must be one of %s (got %q)", strings.Join(allMethods, ", "), method)
	}
	j := newJob(method)
	required := []string{"model", "data", "out"}
	if j.rl() {
		required = []string{"model", "prompts", "reward", "out"}
	}
	if objective.KindOf(method) == objective.Online {
		if err := onlineRanker(c); err != nil {
			return nil, err
		}
		required = []string{"model", "prompts", "out"}
	}
	for _, f := range rows {
		if c.IsSet(f.name()) && !f.applies(method) {
			return nil, f.refusal(c, method)
		}
	}
	for _, name := range required {
		if c.String(name) == "" {
			if j.rl() {
				return nil, usagef("--%s is required for --method %s (or --resume DIR)", name, method)
			}
			return nil, usagef("--%s is required (or --resume DIR)", name)
		}
	}
	for _, f := range rows {
		if c.IsSet(f.name()) || (f.resumable && f.field != nil) {
			if err := f.fill(c, j); err != nil {
				return nil, err
			}
		}
	}
	cm := j.common()
	cm.Method = method
	if cm.InitAdapter != "" || cm.RefAdapter != "" {
		// the policy takes the adapter's shape; a --lora-* flag given with
		// it must agree with the file (checked when the run starts)
		if !c.IsSet("lora-rank") {
			cm.Rank = 0
		}
		if !c.IsSet("lora-alpha") {
			cm.Alpha = 0
		}
		if !c.IsSet("lora-targets") {
			cm.Targets = nil
		}
	}
	var err error
	if j.rl() {
		err = j.r.Validate()
	} else {
		j.t.Stdin = envOf(c).Stdin
		err = j.t.Validate()
	}
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	return j, nil
}

// resumeJob is the resume of the run in dir: flags that may change are
// applied; any other flag must repeat the run's value.
func resumeJob(c *cli.Context, rows []trainFlag, dir string) (*job, error) {
	method := harness.Method(dir)
	if method == "" {
		// let the driver say why (no such folder, no config.json)
		method = strings.ToLower(c.String("method"))
		if !slices.Contains(allMethods, method) {
			method = train.DPO
		}
	}
	for _, f := range rows {
		if f.resumable && f.field != nil && c.IsSet(f.name()) && !f.applies(method) {
			return nil, f.refusal(c, method) // e.g. --max-usd resuming a DPO run
		}
	}
	saved := newJob(method)
	if err := harness.ReadJSON(filepath.Join(dir, "config.json"), saved.configPtr()); err == nil {
		for _, f := range rows {
			if f.resumable || !c.IsSet(f.name()) || f.sameAsRun(c, saved, dir) {
				continue
			}
			return nil, resumeRefusal(f.name(), dir)
		}
	}
	j := &job{method: method}
	cm := j.common()
	cm.Out, cm.Resume = dir, true
	if j.rl() {
		cm.Method = "" // the run's own
	}
	for _, f := range rows {
		if f.resumable && f.field != nil && (c.IsSet(f.name()) || f.name() == "threads" || f.name() == "device" || f.name() == "recompute") {
			switch f.name() {
			case "epochs":
				n := c.Int("epochs")
				cm.Continue.Epochs = &n
			case "max-steps":
				n := c.Int("max-steps")
				cm.Continue.MaxSteps = &n
			default:
				if err := f.fill(c, j); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := harness.CheckDevice(cm.Device); err != nil {
		return nil, &UsageError{Err: err}
	}
	if err := harness.CheckRecompute(cm.Recompute); err != nil {
		return nil, &UsageError{Err: err}
	}
	return j, nil
}

// configPtr is the config j fills, for reading a saved config.json.
func (j *job) configPtr() any {
	if j.rl() {
		return &j.r
	}
	return &j.t
}
