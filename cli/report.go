package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/jsonl"
	areport "github.com/align-dev/align/align/report"
)

// ReportCommand is align report: a training run and its evaluations as
// one offline HTML page and a terminal summary.
func ReportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "write an offline HTML report of a training run and its evaluations",
		ArgsUsage: "RUN_DIR",
		Description: `Reads RUN_DIR/metrics.jsonl (and config.json) from align train and each
--eval FILE from align eval, and writes DIR/index.html: inline SVG charts
of every logged metric against step (loss, reward margins, accuracies per
objective, implicit rewards, learning rate, gradient norm, and KL,
entropy or reward where logged; train solid, held-out dashed), the
before/after issue rates with their 95% intervals, the eval table and
sample responses before and after. The page loads nothing from anywhere
(no scripts, fonts or network). A summary goes to standard output.

A torn last line of metrics.jsonl (a run still writing, or killed) is
left out and said so; a bad line elsewhere is an error naming file:line.

Example:
   align report runs/demo-dpo --eval runs/demo-dpo/eval/eval.json --out runs/demo-dpo/report`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "eval", Usage: "eval.json `FILE` from align eval (repeatable)", EnvVars: []string{"ALIGN_EVAL"}},
			&cli.StringFlag{Name: "out", Usage: "output `DIR` (index.html is written there; required)", EnvVars: []string{"ALIGN_REPORT_OUT"}},
			&cli.IntFlag{Name: "samples", Value: 12, Usage: "prompts shown in each sample-response table", EnvVars: []string{"ALIGN_REPORT_SAMPLES"}},
		},
		Action: runReport,
	}
}

// flagsAfterArg parses the flags that follow the first argument (the
// standard flag parser stops at it, and the documented form is
// "align report RUN_DIR --out DIR") into a context of their own.
func flagsAfterArg(c *cli.Context) (*cli.Context, error) {
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, err
		}
	}
	if err := set.Parse(c.Args().Tail()); err != nil {
		return nil, usagef("%v", err)
	}
	if set.NArg() > 0 {
		return nil, usagef("report takes one RUN_DIR (got also %q)", set.Arg(0))
	}
	return cli.NewContext(c.App, set, c), nil
}

func runReport(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() == 0 {
		return usagef("report takes one RUN_DIR (got none)")
	}
	after, err := flagsAfterArg(c)
	if err != nil {
		return err
	}
	str := func(name string) string {
		if after.IsSet(name) {
			return after.String(name)
		}
		return c.String(name)
	}
	evals := append(c.StringSlice("eval"), after.StringSlice("eval")...)
	if str("out") == "" {
		return usagef("--out DIR is required")
	}
	samples := c.Int("samples")
	if after.IsSet("samples") {
		samples = after.Int("samples")
	}
	if samples < 1 {
		return usagef("--samples %d: want 1 or more", samples)
	}
	dir := c.Args().First()
	if st, err := os.Stat(filepath.Join(dir, "metrics.jsonl")); err != nil || st.IsDir() {
		return usagef("RUN_DIR %s: no metrics.jsonl (want a directory written by align train)", dir)
	}
	if st, err := os.Stat(str("out")); err == nil && !st.IsDir() {
		return usagef("--out %s is a file; want a directory", str("out"))
	}
	p, err := areport.LoadRun(dir)
	if err != nil {
		return err
	}
	p.Samples = samples
	for _, f := range evals {
		st, err := os.Stat(f)
		if err != nil {
			return usagef("--eval %s: %v", f, errors.Unwrap(err))
		}
		if st.IsDir() {
			return usagef("--eval %s is a folder; want the eval.json align eval wrote there (%s)", f, filepath.Join(f, "eval.json"))
		}
		e, err := areport.LoadEval(f)
		if err != nil {
			return err
		}
		p.Evals = append(p.Evals, e)
	}
	if err := os.MkdirAll(str("out"), 0o755); err != nil {
		return err
	}
	out := filepath.Join(str("out"), "index.html")
	if err := jsonl.WriteFileAtomic(out, func(w io.Writer) error { return areport.Render(w, p) }); err != nil {
		return err
	}
	fmt.Fprint(env.Stdout, areport.Summary(p))
	fmt.Fprintf(env.Stderr, "align: wrote %s\n", out)
	return nil
}
