package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/backend/bedrock"
	"github.com/align-dev/align/align/backend/local"
	"github.com/align-dev/align/align/backend/pace"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/pipeline"
)

func init() { register(collectCommand) }

// stageFlags are the flags collect, rank and screen share: files, workers,
// budget, resume.
func stageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "out", Usage: "output `FILE` (.jsonl or .jsonl.zst; '-': standard output, resume is then yours)", Required: true, EnvVars: []string{"ALIGN_OUT"}},
		&cli.StringFlag{Name: "dead-letter", Usage: "dead-letter `FILE` (default: OUT.dead.jsonl; with --out -, STAGE.dead.jsonl in the current directory, e.g. rank.dead.jsonl)", EnvVars: []string{"ALIGN_DEAD_LETTER"}},
		&cli.StringFlag{Name: "ledger", Usage: "cost ledger `FILE` (default: OUT.ledger.jsonl; in memory for --out -)", EnvVars: []string{"ALIGN_LEDGER"}},
		&cli.IntFlag{Name: "workers", Value: 8, Usage: "records in flight", EnvVars: []string{"ALIGN_WORKERS"}},
		&cli.DurationFlag{Name: "item-timeout", Value: 15 * time.Minute, Usage: "time budget per record, retries and repair included (0: none)", EnvVars: []string{"ALIGN_ITEM_TIMEOUT"}},
		&cli.BoolFlag{Name: "retry-failed", Usage: "process the dead letters of earlier runs again", EnvVars: []string{"ALIGN_RETRY_FAILED"}},
		maxUSDFlag(),
		&cli.StringFlag{Name: "prices", Usage: "price table `FILE` (JSON) overriding the built-in prices", EnvVars: []string{"ALIGN_PRICES"}},
		&cli.BoolFlag{Name: "dry-run", Usage: "estimate the cost of the remaining work and exit; calls nothing", EnvVars: []string{"ALIGN_DRY_RUN"}},
		&cli.BoolFlag{Name: "json", Usage: "print the report as JSON on standard output (not with --out -)", EnvVars: []string{"ALIGN_JSON"}},
	}
}

// backendFlags configure model clients: endpoint, pacing, retries, local
// models.
func backendFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "endpoint", Usage: "Bedrock runtime endpoint `URL` (also AWS_ENDPOINT_URL_BEDROCK_RUNTIME)", EnvVars: []string{"ALIGN_ENDPOINT"}},
		&cli.StringFlag{Name: "region", Usage: "AWS `REGION` (default: the standard chain)", EnvVars: []string{"ALIGN_REGION"}},
		&cli.Float64Flag{Name: "rpm", Usage: "requests per minute, retries included (0: unpaced)", EnvVars: []string{"ALIGN_RPM"}},
		&cli.Float64Flag{Name: "tpm", Usage: "tokens per minute, input plus output ceiling (0: unpaced)", EnvVars: []string{"ALIGN_TPM"}},
		&cli.IntFlag{Name: "concurrency", Usage: "calls in flight per model (0: --workers)", EnvVars: []string{"ALIGN_CONCURRENCY"}},
		&cli.IntFlag{Name: "max-attempts", Value: 8, Usage: "attempts per call, the first included", EnvVars: []string{"ALIGN_MAX_ATTEMPTS"}},
		&cli.DurationFlag{Name: "max-backoff", Value: 20 * time.Second, Usage: "longest wait between retries", EnvVars: []string{"ALIGN_MAX_BACKOFF"}},
		&cli.DurationFlag{Name: "attempt-timeout", Value: 2 * time.Minute, Usage: "per HTTP attempt", EnvVars: []string{"ALIGN_ATTEMPT_TIMEOUT"}},
		&cli.IntFlag{Name: "threads", Usage: "CPU threads for local: models (0: all)", EnvVars: []string{"ALIGN_THREADS"}},
		&cli.IntFlag{Name: "ctx-size", Usage: "context size for local: models (0: the model's, at most 4096)", EnvVars: []string{"ALIGN_CTX_SIZE"}},
		&cli.StringFlag{Name: "chat-template", Usage: "local: models render conversations with the Jinja chat template in `FILE` instead of their own", EnvVars: []string{"ALIGN_CHAT_TEMPLATE"}},
		&cli.StringFlag{Name: "chat-template-kwargs", Usage: "extra template variables for local: models: `KEY=VALUE,...` or a JSON object (e.g. enable_thinking=false)", EnvVars: []string{"ALIGN_CHAT_TEMPLATE_KWARGS"}},
	}
}

// batchFlags configure --batch for rank and screen.
func batchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "batch", Usage: "use Bedrock batch inference (half price, hours of latency); job ids are kept in OUT.batch.jsonl", EnvVars: []string{"ALIGN_BATCH"}},
		&cli.StringFlag{Name: "batch-bucket", Usage: "S3 `BUCKET` for batch input and output", EnvVars: []string{"ALIGN_BATCH_BUCKET"}},
		&cli.StringFlag{Name: "batch-prefix", Value: "align/batch", Usage: "S3 key `PREFIX`", EnvVars: []string{"ALIGN_BATCH_PREFIX"}},
		&cli.StringFlag{Name: "batch-role", Usage: "IAM role `ARN` Bedrock assumes to read and write the bucket", EnvVars: []string{"ALIGN_BATCH_ROLE"}},
		&cli.StringFlag{Name: "batch-endpoint", Usage: "Bedrock control-plane endpoint `URL`", EnvVars: []string{"ALIGN_BATCH_ENDPOINT"}},
		&cli.StringFlag{Name: "s3-endpoint", Usage: "S3 endpoint `URL` (path-style addressing)", EnvVars: []string{"ALIGN_S3_ENDPOINT"}},
		&cli.DurationFlag{Name: "batch-poll", Value: 30 * time.Second, Usage: "interval between job status polls", EnvVars: []string{"ALIGN_BATCH_POLL"}},
	}
}

// commonOf checks the flags every stage shares and the files it names
// (in, out and the side files: side holds a stage's own, such as ties) and
// returns the stage's common configuration. Nothing is opened or created.
func commonOf(c *cli.Context, stage, inFlag string, side ...namedPath) (pipeline.Common, error) {
	env := envOf(c)
	in := c.String(inFlag)
	pc := pipeline.Common{
		In: in, Out: c.String("out"), Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr,
		DeadLetter: c.String("dead-letter"), Ledger: c.String("ledger"),
		Workers: c.Int("workers"), ItemTimeout: c.Duration("item-timeout"), RetryFailed: c.Bool("retry-failed"),
		DryRun: c.Bool("dry-run"),
	}
	if err := checkAll(
		checkIntsAtLeast(c, 1, "workers", "max-attempts", "max-tokens"),
		checkIntsAtLeast(c, 0, "concurrency", "threads", "ctx-size"),
		checkDurations(c, "item-timeout", "max-backoff", "attempt-timeout"),
		checkAmounts(c, "rpm", "tpm"),
	); err != nil {
		return pc, err
	}
	if c.IsSet("max-usd") {
		usd := c.Float64("max-usd")
		if math.IsNaN(usd) || math.IsInf(usd, 0) || usd < 0 {
			return pc, usagef("--max-usd %g: want a finite amount, 0 (spend nothing) or more; leave the flag out for no limit", usd)
		}
		pc.MaxUSD = &usd
	}
	dead := pc.DeadLetter
	if dead == "" {
		dead = pipeline.StagePath(stage, pc.Out, "dead")
	}
	ledger := pc.Ledger
	if ledger == "" && pc.Out != "-" {
		ledger = pipeline.SidePath(pc.Out, "ledger")
	}
	inputs := []namedPath{{inFlag, in}, {"prices", c.String("prices")}}
	for _, f := range []string{"rubric", "constitution"} {
		if c.IsSet(f) {
			inputs = append(inputs, namedPath{f, c.String(f)})
		}
	}
	outputs := append([]namedPath{{"out", pc.Out}, {"dead-letter", dead}, {"ledger", ledger}}, side...)
	if err := checkDistinct(inputs, outputs); err != nil {
		return pc, err
	}
	if p := c.String("prices"); p != "" {
		prices, err := cost.LoadPrices(p)
		if err != nil {
			return pc, err
		}
		pc.Prices = prices
	}
	return pc, nil
}

func openBackend(c *cli.Context, flag string) (*pipeline.Backend, error) {
	spec := c.String(flag)
	conc := c.Int("concurrency")
	if conc <= 0 {
		conc = c.Int("workers")
	}
	region := c.String("region")
	if region == "" && c.Bool("dry-run") && os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
		// a dry run calls nothing and prices do not depend on the region:
		// any region satisfies the client, so an estimate needs no AWS set-up
		region = "us-east-1"
	}
	topts, err := templateOptions(c)
	if err != nil {
		return nil, err
	}
	b, err := pipeline.Open(c.Context, spec, pipeline.OpenOptions{
		Endpoint: c.String("endpoint"), Region: region,
		MaxAttempts: c.Int("max-attempts"), MaxBackoff: c.Duration("max-backoff"), AttemptTimeout: c.Duration("attempt-timeout"),
		CallTimeout: c.Duration("item-timeout"),
		Limits:      pace.Limits{RPM: c.Float64("rpm"), TPM: c.Float64("tpm"), Concurrency: conc},
		Local:       local.Options{Threads: c.Int("threads"), NCtx: c.Int("ctx-size"), Template: topts.Template, Kwargs: topts.Kwargs},
	})
	if err != nil {
		return nil, usagef("--%s: %v", flag, err)
	}
	return b, nil
}

func openBatch(c *cli.Context) (*pipeline.BatchConfig, error) {
	if !c.Bool("batch") {
		return nil, nil
	}
	if c.String("batch-bucket") == "" || c.String("batch-role") == "" {
		return nil, usagef("--batch needs --batch-bucket and --batch-role")
	}
	ep := c.String("batch-endpoint")
	if ep == "" {
		ep = c.String("endpoint")
	}
	b, err := bedrock.NewBatch(c.Context, bedrock.BatchOptions{
		Options:    bedrock.Options{Region: c.String("region"), Endpoint: ep, MaxAttempts: c.Int("max-attempts"), MaxBackoff: c.Duration("max-backoff")},
		S3Endpoint: c.String("s3-endpoint"), S3PathStyle: c.String("s3-endpoint") != "",
		RoleARN: c.String("batch-role"), Bucket: c.String("batch-bucket"), Prefix: c.String("batch-prefix"),
		PollInterval: c.Duration("batch-poll"),
	})
	if err != nil {
		return nil, err
	}
	return &pipeline.BatchConfig{Client: b}, nil
}

// stageError maps a stage's error to align's exit codes: a spending limit
// is ExitBudget, an interruption with a resumable output ExitResumable.
func stageError(c *cli.Context, out string, err error) error {
	if err == nil {
		return nil
	}
	if cost.IsBudget(err) {
		return &ExitCodeError{Code: ExitBudget, Err: err}
	}
	if errors.Is(err, context.Canceled) && c.Context.Err() != nil && out != "-" {
		return &ExitCodeError{Code: ExitResumable, Err: fmt.Errorf("%w (rerun the same command to continue)", err)}
	}
	return err
}

// report prints a report as JSON on stdout when --json is set.
func report(c *cli.Context, v any) error {
	if !c.Bool("json") || c.String("out") == "-" {
		return nil
	}
	enc := json.NewEncoder(envOf(c).Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printEstimate prints a dry run's estimate on stderr.
func printEstimate(c *cli.Context, e *cost.Estimate) {
	if e == nil {
		return
	}
	w := envOf(c).Stderr
	fmt.Fprintf(w, "%-8s %-45s %8s %10s %10s %10s\n", "step", "model", "calls", "in/call", "out/call", "usd")
	for _, l := range e.Lines {
		usd := fmt.Sprintf("%.2f", l.USD)
		if !l.Priced {
			usd = "unpriced"
		}
		batch := ""
		if l.Batch {
			batch = " (batch)"
		}
		fmt.Fprintf(w, "%-8s %-45s %8d %10d %10d %10s\n", l.Name+batch, l.Model, l.Calls, l.InputTokens, l.OutputTokens, usd)
	}
	fmt.Fprintf(w, "total: $%.2f (estimate; nothing was called)\n", e.TotalUSD)
	if len(e.Unpriced) > 0 {
		fmt.Fprintf(w, "no price for: %v (add them with --prices)\n", e.Unpriced)
	}
}

func collectCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "prompts", Aliases: []string{"in"}, Usage: "prompts `FILE` (JSONL: {\"id\"?, \"prompt\" | \"messages\", \"system\"?, \"objective\"?}; '-': standard input)", Required: true, EnvVars: []string{"ALIGN_PROMPTS"}},
		&cli.StringFlag{Name: "generator", Usage: "generator `SPEC`: bedrock:MODEL, local:FILE.gguf or openai:URL[#model]", Required: true, EnvVars: []string{"ALIGN_GENERATOR"}},
		&cli.IntFlag{Name: "n", Value: 2, Usage: "responses per prompt", EnvVars: []string{"ALIGN_N"}},
		&cli.Float64SliceFlag{Name: "temperature", Usage: "temperature of each response, cycled (default 0.7,1.0)", EnvVars: []string{"ALIGN_TEMPERATURE"}},
		&cli.Float64SliceFlag{Name: "top-p", Usage: "top-p of each response, cycled (default 0.9,0.95)", EnvVars: []string{"ALIGN_TOP_P"}},
		&cli.IntFlag{Name: "max-tokens", Value: 512, Usage: "output ceiling per response", EnvVars: []string{"ALIGN_MAX_TOKENS"}},
		&cli.StringFlag{Name: "system", Usage: "system prompt for prompts without one", EnvVars: []string{"ALIGN_SYSTEM"}},
		&cli.Int64Flag{Name: "seed", Value: 1, Usage: "sampling seed (response i uses seed+i) where the backend takes one", EnvVars: []string{"ALIGN_SEED"}},
		&cli.StringFlag{Name: "judge", Usage: "with --dry-run: also estimate ranking with this judge `SPEC`", EnvVars: []string{"ALIGN_JUDGE"}},
		&cli.BoolFlag{Name: "single-order", Usage: "with --dry-run --judge: the judge sees one order only", EnvVars: []string{"ALIGN_SINGLE_ORDER"}},
	}
	return &cli.Command{
		Name:      "collect",
		Usage:     "sample candidate responses for prompts",
		ArgsUsage: " ",
		Description: `Samples --n responses per prompt (defaults: A at temperature 0.7, top-p
0.9; B at 1.0, 0.95) and appends one candidate record per prompt to --out.
Records have deterministic ids; a rerun skips finished prompts and drops a
torn last line. Failures go to OUT.dead.jsonl, spend to OUT.ledger.jsonl
(with --out -: collect.dead.jsonl in the current directory, or
--dead-letter; the ledger stays in memory). An existing --out must hold
candidate records. --max-usd 0 spends nothing; without the flag there is
no limit. Five calls in a row that cannot reach the server (refused,
unknown host, no credentials) stop the run with exit 1.

Example:
   align collect --prompts testdata/prompts/sample.jsonl --generator bedrock:meta.llama3-70b-instruct-v1:0 --out cand.jsonl
   align collect --prompts p.jsonl --generator local:model.gguf --out - | align rank --in - --judge rules:testdata/catalog.json --out pairs.jsonl
   align collect --prompts p.jsonl --generator bedrock:meta.llama3-70b-instruct-v1:0 --judge bedrock:anthropic.claude-3-5-sonnet-20240620-v1:0 --out c.jsonl --dry-run`,
		Flags:  append(append(flags, stageFlags()...), backendFlags()...),
		Action: runCollect,
	}
}

func runCollect(c *cli.Context) error {
	pc, err := commonOf(c, "collect", "prompts")
	if err != nil {
		return err
	}
	if c.Int("n") < 2 {
		return usagef("--n %d: want 2 or more", c.Int("n"))
	}
	temps, tops := c.Float64Slice("temperature"), c.Float64Slice("top-p")
	var samplings []pipeline.Sampling
	if len(temps) > 0 || len(tops) > 0 {
		if len(temps) == 0 || len(tops) == 0 {
			return usagef("give both --temperature and --top-p, or neither")
		}
		for i := 0; i < max(len(temps), len(tops)); i++ {
			s := pipeline.Sampling{Temperature: temps[i%len(temps)], TopP: tops[i%len(tops)]}
			if math.IsNaN(s.Temperature) || math.IsInf(s.Temperature, 0) || s.Temperature < 0 {
				return usagef("--temperature %g: want a finite number, 0 or more", s.Temperature)
			}
			if !(s.TopP > 0 && s.TopP <= 1) {
				return usagef("--top-p %g: want a number in (0, 1]", s.TopP)
			}
			samplings = append(samplings, s)
		}
	}
	gen, err := openBackend(c, "generator")
	if err != nil {
		return err
	}
	defer gen.Close()
	if gen.Generator == nil {
		return usagef("--generator %s cannot generate text", c.String("generator"))
	}
	cfg := pipeline.CollectConfig{Common: pc, Generator: gen, N: c.Int("n"), Samplings: samplings, System: c.String("system"),
		MaxTokens: c.Int("max-tokens"), Seed: c.Int64("seed"), BothOrders: !c.Bool("single-order")}
	if j := c.String("judge"); j != "" {
		if !pc.DryRun {
			return usagef("--judge is for --dry-run estimates; rank with 'align rank'")
		}
		cfg.JudgeModel = j
		if b, err := openBackend(c, "judge"); err == nil {
			cfg.JudgeModel = b.Model
			b.Close()
		}
	}
	rep, err := pipeline.Collect(c.Context, cfg)
	if pc.DryRun && err == nil {
		fmt.Fprintf(envOf(c).Stderr, "collect: %d prompts to do (%d done before)\n", rep.Prompts-rep.Skipped, rep.Skipped)
		printEstimate(c, rep.Estimate)
	}
	if rerr := report(c, rep); err == nil {
		err = rerr
	}
	return stageError(c, pc.Out, err)
}
