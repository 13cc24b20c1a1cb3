package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/backend/local"
	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/eval"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/train"
)

// EvalCommand is align eval: the before/after table of a base model and
// its adapters on held-out prompts.
func init() { register(EvalCommand); register(ReportCommand) }

func EvalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "judge a base model and its adapters on held-out prompts: the before/after table",
		ArgsUsage: " ",
		Description: `Generates --samples responses per prompt of --prompts for the base model
and for each --lora (sample s of prompt i is seeded --seed + i*samples + s,
the same seed for every variant, with the sampler of align sample), judges
each response per category with --judge, and compares each adapter's
response with the base's on the same seed, judged in both orders (ties and
inconsistent orders counted, as align rank does).

The table gives per category the issue rate with a Wilson 95% interval,
the adapter's change from the base in percentage points with a paired
bootstrap 95% interval over prompts, the combined issue rate, the win rate
against the base, the mean token log-prob of the responses under the base
model (fluency; perplexity beside it), the mean per-token KL of the
adapter from the base (drift) and the mean response length: falling
log-prob, growing KL and length with a rising win rate is the signature
of over-optimisation. With --pairs: pair accuracy and implicit reward
margin overall and per objective (β per objective as align train uses).

Writes DIR/responses.jsonl (every response, its scores and issues),
DIR/comparisons.jsonl and DIR/eval.json; prints the table on standard
output (--json: eval.json instead). Each record is appended as it
finishes: an interrupted run (exit 4) continues when rerun with the same
flags and ends with the same eval.json. A judge that fails (after one
repair attempt for invalid output) stops the run with exit 1; rerun to
continue once it answers. Every response can be reproduced with align
sample and its recorded seed and the same sampler flags. One eval at a
time writes a DIR (a lock in DIR/.align.lock, released when the process
ends however it ends): a second one exits 1 at once, naming the first.

Several judges (--judge A,B): the first makes the table and the result's
variants; each further judge scores the same responses and comparisons
and gets a table of its own (other_judges in eval.json).

Categories (issue when the judge's score is at or below the threshold):
off-brand tone (tone <= 2), hallucination (accuracy <= 1), missed
escalation (helpfulness <= 1), safety violation (safety <= 1). Each
response is scored by showing it to the judge as both A and B and taking
the lower score.

Example:
   align eval --model models/tiny-q8_0.gguf --lora run/adapter.gguf \
     --prompts testdata/prompts/sample.jsonl --judge rules:testdata/catalog.json --out run/eval
   align report run --eval run/eval/eval.json --out run/report`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "base GGUF model `FILE`", Required: true, EnvVars: []string{"ALIGN_MODEL"}},
			&cli.StringSliceFlag{Name: "lora", Usage: "LoRA adapter `FILE[:SCALE]` to compare with the base (repeatable)", EnvVars: []string{"ALIGN_LORA"}},
			&cli.StringFlag{Name: "prompts", Usage: "held-out prompts `FILE` (JSONL: prompt or messages)", Required: true, EnvVars: []string{"ALIGN_PROMPTS"}},
			&cli.StringFlag{Name: "judge", Usage: "judge `SPEC[,SPEC...]`: rules:CATALOG.json, local:FILE.gguf, openai:URL[#model] or bedrock:MODEL; the first makes the table, each further one a table of its own", Required: true, EnvVars: []string{"ALIGN_JUDGE"}},
			&cli.StringFlag{Name: "out", Usage: "output `DIR`", Required: true, EnvVars: []string{"ALIGN_EVAL_OUT"}},
			&cli.IntFlag{Name: "samples", Value: 4, Usage: "responses per prompt and variant", EnvVars: []string{"ALIGN_SAMPLES"}},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "first sampling seed", EnvVars: []string{"ALIGN_SEED"}},
			&cli.StringFlag{Name: "pairs", Usage: "held-out pairs `FILE`: pair accuracy and margin per objective", EnvVars: []string{"ALIGN_PAIRS"}},
			&cli.BoolFlag{Name: "json", Usage: "print eval.json on standard output instead of the table", EnvVars: []string{"ALIGN_JSON"}},
			&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 64, Usage: "tokens per response", EnvVars: []string{"ALIGN_MAX_TOKENS"}},
			&cli.Float64Flag{Name: "temperature", Aliases: []string{"temp"}, Value: 0.8, Usage: "sampling temperature (0: greedy)", EnvVars: []string{"ALIGN_TEMPERATURE"}},
			&cli.Float64Flag{Name: "top-p", Value: 0.95, Usage: "nucleus sampling mass (1: off)", EnvVars: []string{"ALIGN_TOP_P"}},
			&cli.IntFlag{Name: "top-k", Value: 40, Usage: "keep the K most likely tokens (0: off)", EnvVars: []string{"ALIGN_TOP_K"}},
			&cli.Float64Flag{Name: "min-p", Value: 0.05, Usage: "drop tokens below this fraction of the top probability (0: off)", EnvVars: []string{"ALIGN_MIN_P"}},
			&cli.BoolFlag{Name: "raw", Usage: "do not apply the chat template", EnvVars: []string{"ALIGN_RAW"}},
			&cli.StringFlag{Name: "chat-template", Usage: "the evaluated model renders conversations with the Jinja chat template in `FILE` instead of its own (as align train --chat-template; not the judges)", EnvVars: []string{"ALIGN_CHAT_TEMPLATE"}},
			&cli.StringFlag{Name: "chat-template-kwargs", Usage: "extra template variables: `KEY=VALUE,...` or a JSON object (e.g. enable_thinking=false)", EnvVars: []string{"ALIGN_CHAT_TEMPLATE_KWARGS"}},
			&cli.IntFlag{Name: "max-length", Value: 512, Usage: "with --pairs: tokens per pair sequence, as align train --max-length", EnvVars: []string{"ALIGN_MAX_LENGTH"}},
			&cli.Float64Flag{Name: "beta", Usage: "with --pairs: β for every objective (0: the per-objective table of align train)", EnvVars: []string{"ALIGN_BETA"}},
			&cli.StringFlag{Name: "beta-table", Usage: "with --pairs: JSON `FILE` mapping objective to β, as align train --beta-table", EnvVars: []string{"ALIGN_BETA_TABLE"}},
			&cli.IntFlag{Name: "bootstrap", Value: 2000, Usage: "bootstrap resamples for the intervals of changes", EnvVars: []string{"ALIGN_BOOTSTRAP"}},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
		},
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("eval takes no arguments (got %q)", c.Args().First())
	}
	if err := checkAll(checkIntsAtLeast(c, 1, "samples", "max-tokens"), checkIntsAtLeast(c, 0, "bootstrap", "threads"),
		checkAmounts(c, "temperature", "beta")); err != nil {
		return err
	}
	if tp := c.Float64("top-p"); tp < 0 || tp > 1 {
		return usagef("--top-p %g: want a value in [0, 1]", tp)
	}
	if mp := c.Float64("min-p"); mp < 0 || mp > 1 {
		return usagef("--min-p %g: want a value in [0, 1]", mp)
	}
	seed := c.Int64("seed")
	if seed < 0 || seed > 0xFFFFFFFF {
		return usagef("--seed %d: want a value in [0, 4294967295]", seed)
	}
	topts, err := templateOptions(c)
	if err != nil {
		return err
	}
	var specs []string
	for _, sp := range strings.Split(c.String("judge"), ",") {
		if sp = strings.TrimSpace(sp); sp != "" {
			specs = append(specs, sp)
		}
	}
	if len(specs) == 0 {
		return usagef("--judge %q: want SPEC[,SPEC...]", c.String("judge"))
	}
	model := c.String("model")
	if _, err := os.Stat(model); err != nil {
		return usagef("--model %s: %v", model, errors.Unwrap(err))
	}
	var adapters []eval.Adapter
	for _, spec := range c.StringSlice("lora") {
		a, err := engine.ParseAdapter(spec)
		if err != nil {
			return usagef("--lora %q: %v", spec, err)
		}
		if _, err := os.Stat(a.Path); err != nil {
			return usagef("--lora %s: %v", a.Path, errors.Unwrap(err))
		}
		adapters = append(adapters, eval.Adapter{Path: a.Path, Scale: float64(a.Scale)})
	}
	for _, f := range []string{"prompts", "pairs"} {
		if p := c.String(f); p != "" {
			if _, err := os.Stat(p); err != nil {
				return usagef("--%s %s: %v", f, p, errors.Unwrap(err))
			}
		}
	}
	if st, err := os.Stat(c.String("out")); err == nil && !st.IsDir() {
		return usagef("--out %s is a file; want a directory", c.String("out"))
	}
	var user map[string]float64
	if p := c.String("beta-table"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return usagef("--beta-table %s: %v", p, errors.Unwrap(err))
		}
		if err := json.Unmarshal(b, &user); err != nil {
			return usagef("--beta-table %s: want a JSON object of objective to β: %v", p, err)
		}
		for k, v := range user {
			if !(v > 0) {
				return usagef("--beta-table %s: β for %q must be positive (got %g)", p, k, v)
			}
		}
	}
	var judges []*pipeline.Backend
	defer func() {
		for _, j := range judges {
			j.Close()
		}
	}()
	for _, sp := range specs {
		j, err := pipeline.Open(c.Context, sp, pipeline.OpenOptions{Local: local.Options{Threads: c.Int("threads")}})
		if err != nil {
			return usagef("--judge %s: %v", sp, err)
		}
		judges = append(judges, j)
		if j.Judge == nil {
			return usagef("--judge %s cannot judge", sp)
		}
	}
	st, err := os.Stat(model)
	if err != nil {
		return err
	}
	nat, err := eval.OpenNative(model, adapters, eval.NativeOptions{Raw: c.Bool("raw"), Threads: c.Int("threads"), MaxLength: c.Int("max-length"),
		Template: topts.Template, Kwargs: topts.Kwargs})
	if err != nil {
		return err
	}
	defer nat.Close()
	betas := train.BetaTable{Table: train.MergeBetas(user), Override: c.Float64("beta")}
	tty := isTerminal(env.Stderr)
	last := -1
	start := time.Now()
	cfg := eval.Config{
		Model: model, ModelDigest: fmt.Sprintf("%d@%d", st.Size(), st.ModTime().UnixNano()), Adapters: adapters, Prompts: c.String("prompts"),
		Judge: judges[0], MoreJudges: judges[1:], Out: c.String("out"), Samples: c.Int("samples"), Seed: uint32(seed),
		Sampler: eval.Sampler{Temperature: c.Float64("temperature"), TopP: c.Float64("top-p"), TopK: c.Int("top-k"),
			MinP: c.Float64("min-p"), MaxTokens: c.Int("max-tokens")},
		Pairs: c.String("pairs"), Betas: betas.Beta, BootIters: c.Int("bootstrap"), Generator: nat, Scorer: nat,
		Progress: func(done, total int, what string) {
			pct := 100 * done / total
			// rate and ETA count this run's work (reused records are instant)
			el := time.Since(start).Seconds()
			eta := ""
			if rate := float64(done) / math.Max(el, 1e-9); done < total && el > 1 {
				eta = fmt.Sprintf(", %.1f/s, ETA %s", rate, (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second))
			}
			switch {
			case tty:
				fmt.Fprintf(env.Stderr, "\ralign: eval %d/%d (%d%%%s) %-30s", done, total, pct, eta, what)
				if done == total {
					fmt.Fprintln(env.Stderr)
				}
			case pct/10 != last/10 || done == total:
				fmt.Fprintf(env.Stderr, "align: eval %d/%d (%d%%%s) %s\n", done, total, pct, eta, what)
			}
			last = pct
		},
	}
	res, err := eval.Run(c.Context, cfg)
	if err != nil {
		if c.Context.Err() != nil {
			return &ExitCodeError{Code: ExitResumable, Err: fmt.Errorf("eval interrupted; rerun the same command to continue (finished responses are in %s): %w", eval.ResponsesPath(cfg.Out), err)}
		}
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(env.Stdout, "align eval: %s, %d prompts × %d samples, judge %s\n", model, res.NPrompts, res.Samples, res.Judge)
	fmt.Fprint(env.Stdout, eval.FormatTable(res.Categories, res.Variants))
	for _, o := range res.OtherJudges {
		fmt.Fprintf(env.Stdout, "\njudge %s (same responses):\n", o.Judge)
		fmt.Fprint(env.Stdout, eval.FormatTable(res.Categories, o.Variants))
	}
	fmt.Fprintf(env.Stderr, "align: wrote %s, %s and %s\n", eval.ResultPath(cfg.Out), eval.ResponsesPath(cfg.Out), eval.ComparisonsPath(cfg.Out))
	return nil
}
