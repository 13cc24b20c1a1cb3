package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/annotate"
	"github.com/align-dev/align/align/pairs"
)

func init() { register(annotateCommand) }

func annotateCommand() *cli.Command {
	return &cli.Command{
		Name:  "annotate",
		Usage: "label preference pairs by hand in a browser; agreement statistics",
		Description: `Human labelling without another server or database: 'serve' shows people a
conversation and two responses in their browser and records which is better
(one JSON line per label, synced before the answer); 'stats' tells how well
the annotators agree with each other (Cohen's kappa, Krippendorff's alpha)
and whether a judge's verdicts from 'align rank' agree with the human
majority; 'export' turns the labels into training pairs by majority vote.
'bench' measures the server under load.

Example:
   align annotate serve --in cand.jsonl --out labels.jsonl --annotators ana,ben,chi --per-item 2
   align annotate stats --labels labels.jsonl --judged pairs.jsonl --judged pairs.jsonl.ties.jsonl
   align annotate export --labels labels.jsonl --out human-pairs.jsonl`,
		Subcommands: []*cli.Command{annotateServeCommand(), annotateStatsCommand(), annotateExportCommand(), annotateBenchCommand()},
	}
}

func annotateServeCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve the labelling page until interrupted",
		ArgsUsage: " ",
		Description: `Serves one page (embedded in align; nothing is loaded from the network) that
shows each item's conversation and two responses side by side, A on the
left and B on the right, in an order drawn per annotator and item and
recorded with the label. Keys: 1 (A is better), 2 (B), 3 (tie), s (skip),
u (undo the last label); with --rubric, 1-5 scores for tone, accuracy,
helpfulness and safety of each response; an optional free-text reason.
The page shows done, remaining and labels per minute.

--in is a collect candidates file (a candidate with n responses gives an
item per pair of them, as rank judges them) or a pairs file (to check a
judge's verdicts), JSON Lines or .zst. Once listening, one line per
annotator goes to standard output: NAME URL (the URL holds a personal
token; 'you' without --annotators). Tokens are kept in OUT.tokens.json
(mode 0600) so that a restart keeps the URLs; delete it to revoke them.

--per-item K gives each item to K different annotators; nobody sees an
item twice, and an item handed out is held for its annotator (--lease,
renewed by activity) so concurrent annotators do not collide. Each label
is appended to OUT and synced before the page hears back; a server that
was killed, restarted with the same flags, goes on where every annotator
was, losing and repeating nothing (a torn last line is dropped). Undo
appends a record with choice "undo" rather than rewriting the file.

The server binds loopback by default; another address needs --annotators
(personal tokens) or it refuses to start. Model text is shown as text,
never HTML. Ctrl-C stops it (exit 0).

JSON API (token in 'Authorization: Bearer TOKEN'): GET /api/next -> item
{"item_id", "prompt"|"messages", "responses": [A, B]} or 204 when nothing
is left; POST /api/label {"item_id", "choice": "a"|"b"|"tie"|"skip"};
POST /api/undo {"item_id"?}; GET /api/progress.

Example:
   align annotate serve --in cand.jsonl --out labels.jsonl
   align annotate serve --in pairs.jsonl --out labels.jsonl --annotators ana,ben,chi --per-item 2 --rubric
   align annotate serve --in cand.jsonl.zst --out labels.jsonl --addr 0.0.0.0:8080 --annotators ana,ben`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Usage: "candidates or pairs `FILE` to label (.jsonl or .jsonl.zst; '-': standard input)", Required: true, EnvVars: []string{"ALIGN_IN"}},
			&cli.StringFlag{Name: "out", Usage: "labels `FILE` (JSON Lines, appended; created if missing)", Required: true, EnvVars: []string{"ALIGN_OUT"}},
			&cli.StringFlag{Name: "addr", Value: annotate.DefaultAddr, Usage: "listen `HOST:PORT` (another than loopback needs --annotators)", EnvVars: []string{"ALIGN_ADDR"}},
			&cli.StringFlag{Name: "annotators", Usage: "annotator `NAMES`, comma-separated, each with a personal URL (default: one, 'you')", EnvVars: []string{"ALIGN_ANNOTATORS"}},
			&cli.IntFlag{Name: "per-item", Value: 1, Usage: "different annotators per item (`K`)", EnvVars: []string{"ALIGN_PER_ITEM"}},
			&cli.BoolFlag{Name: "rubric", Usage: "ask for 1-5 scores on tone, accuracy, helpfulness and safety", EnvVars: []string{"ALIGN_ANNOTATE_RUBRIC"}},
			&cli.DurationFlag{Name: "lease", Value: annotate.DefaultLease, Usage: "how long an item stays held for an idle annotator", EnvVars: []string{"ALIGN_LEASE"}},
		},
		Action: runAnnotateServe,
	}
}

func runAnnotateServe(c *cli.Context) error {
	in, out, addr := c.String("in"), c.String("out"), c.String("addr")
	if err := checkAll(checkIntsAtLeast(c, 1, "per-item"), checkPositiveDurations(c, "lease")); err != nil {
		return err
	}
	if out == "-" {
		return usagef("--out -: labels are appended to a file; name one")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("--addr %q: want HOST:PORT (%v)", addr, err)
	}
	var names []string
	if c.IsSet("annotators") {
		for _, n := range strings.Split(c.String("annotators"), ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return usagef("--annotators %q: no names", c.String("annotators"))
		}
		if err := annotate.CheckNames(names); err != nil {
			return usagef("--annotators: %v", err)
		}
	}
	loop, _ := annotate.IsLoopback(addr)
	if !loop && names == nil {
		return usagef("--addr %s is not a loopback address: refusing to serve without personal tokens; name the annotators with --annotators", addr)
	}
	have := max(len(names), 1)
	if k := c.Int("per-item"); k > have {
		return usagef("--per-item %d: needs at least %d annotators, --annotators names %d", k, k, have)
	}
	tokens := annotate.TokensPath(out)
	if err := checkDistinct([]namedPath{{"in", in}}, []namedPath{{"out", out}, {"out (tokens)", tokens}}); err != nil {
		return err
	}
	items, err := annotate.LoadItems(in)
	if err != nil {
		return err
	}
	all := names
	if all == nil {
		all = []string{annotate.DefaultName}
	}
	toks, err := annotate.LoadTokens(tokens, all)
	if err != nil {
		return err
	}
	env := envOf(c)
	cfg := annotate.ServeConfig{Items: items, Labels: out, Addr: addr, Annotators: names, Tokens: toks,
		PerItem: c.Int("per-item"), Rubric: c.Bool("rubric"), Lease: c.Duration("lease"), Log: env.Stderr}
	return annotate.Serve(c.Context, cfg, func(urls []annotate.Named) {
		var b strings.Builder
		for _, u := range urls {
			fmt.Fprintf(&b, "%s %s\n", u.Name, u.URL)
		}
		fmt.Fprint(env.Stdout, b.String())
		if f, ok := env.Stdout.(*os.File); ok {
			f.Sync()
		}
	})
}

func annotateStatsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "annotator speed, agreement between annotators, and a judge's agreement with them",
		ArgsUsage: " ",
		Description: `Reads a labels file (undos applied) and reports per annotator the labels,
choices, skips, median seconds per item and labels per active hour (pauses
over 5 minutes left out); Cohen's kappa for each pair of annotators over the
items both labelled and Krippendorff's alpha (nominal: first, second, tie;
skips left out) over all items with two or more labels, each with a 95%
interval from bootstrap resamples of items; and how many items have a human
majority (more than half of their labels).

With --judged (rank's pairs output and its ties file; repeatable), the
judge's agreement with the human majority: the share of items with a
majority and a verdict where the judge says the same (first, second or
tie), with a Wilson 95% interval, the same for items where both prefer a
response, and the confusion table. Verdicts meet labels by candidate id
and response indexes (candidates input) or by pair id (pairs input).

Example:
   align annotate stats --labels labels.jsonl
   align annotate stats --labels labels.jsonl --judged pairs.jsonl --judged pairs.jsonl.ties.jsonl --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "labels", Usage: "labels `FILE` from annotate serve", Required: true, EnvVars: []string{"ALIGN_LABELS"}},
			&cli.StringSliceFlag{Name: "judged", Usage: "rank output `FILE` (pairs or ties; repeatable)", EnvVars: []string{"ALIGN_JUDGED"}},
			&cli.IntFlag{Name: "bootstrap", Value: 1000, Usage: "bootstrap resamples for the intervals (0: none)", EnvVars: []string{"ALIGN_BOOTSTRAP"}},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "bootstrap seed", EnvVars: []string{"ALIGN_SEED"}},
			&cli.BoolFlag{Name: "json", Usage: "print the report as one JSON object", EnvVars: []string{"ALIGN_JSON"}},
		},
		Action: func(c *cli.Context) error {
			if err := checkIntsAtLeast(c, 0, "bootstrap"); err != nil {
				return err
			}
			g, err := annotate.ReadLabels(c.String("labels"))
			if err != nil {
				return err
			}
			cfg := annotate.StatsConfig{Bootstrap: c.Int("bootstrap"), Seed: c.Uint64("seed")}
			if cfg.Bootstrap == 0 {
				cfg.Bootstrap = -1
			}
			if js := c.StringSlice("judged"); len(js) > 0 {
				if cfg.Judged, err = annotate.LoadJudged(js...); err != nil {
					return err
				}
			}
			rep := annotate.Stats(g, cfg)
			env := envOf(c)
			if c.Bool("json") {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			if rep.Lines == 0 {
				return fmt.Errorf("%s: no labels", c.String("labels"))
			}
			return rep.WriteText(env.Stdout)
		},
	}
}

func annotateExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write preference pairs from labels by majority vote",
		ArgsUsage: " ",
		Description: `Writes one pair per item whose labels (skips left out, undos applied) give
one response more than half of the votes: chosen is that response, source
"human", the input's form kept (a conversation stays a message list), with
item_id, indexes [chosen, rejected], votes and annotators as extra fields.
Items whose majority is tie, items without a majority (for instance 1-1
with two annotators), items with only skips and items with fewer labels
than --min-votes are dropped and counted on standard error (--json: as
one JSON object on standard output). The file is written whole (temporary
name, then renamed); train, import and data read it.

Example:
   align annotate export --labels labels.jsonl --out human-pairs.jsonl
   align annotate export --labels labels.jsonl --out human-pairs.jsonl.zst --min-votes 2 --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "labels", Usage: "labels `FILE` from annotate serve", Required: true, EnvVars: []string{"ALIGN_LABELS"}},
			&cli.StringFlag{Name: "out", Usage: "pairs `FILE` (.jsonl or .jsonl.zst; '-': standard output)", Required: true, EnvVars: []string{"ALIGN_OUT"}},
			&cli.IntFlag{Name: "min-votes", Value: 1, Usage: "labels (skips left out) an item needs to be exported", EnvVars: []string{"ALIGN_MIN_VOTES"}},
			&cli.BoolFlag{Name: "json", Usage: "print the counts as one JSON object", EnvVars: []string{"ALIGN_JSON"}},
		},
		Action: func(c *cli.Context) error {
			if err := checkIntsAtLeast(c, 1, "min-votes"); err != nil {
				return err
			}
			labels, out := c.String("labels"), c.String("out")
			if err := checkDistinct([]namedPath{{"labels", labels}}, []namedPath{{"out", out}}); err != nil {
				return err
			}
			g, err := annotate.ReadLabels(labels)
			if err != nil {
				return err
			}
			ps, rep := annotate.Export(g, c.Int("min-votes"))
			if err := pairs.Save(out, ps); err != nil {
				return err
			}
			env := envOf(c)
			fmt.Fprintf(env.Stderr, "annotate export: %s to %s from %d labelled items; dropped %d ties, %d without a majority, %d only skipped, %d with too few labels\n",
				fmtCount(rep.Pairs, "pair", "pairs"), out, rep.Items, rep.Ties, rep.Disagreements, rep.SkippedOnly, rep.TooFewVotes)
			if c.Bool("json") && out != "-" {
				return json.NewEncoder(env.Stdout).Encode(rep)
			}
			return nil
		},
	}
}

func annotateBenchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "load-test annotate serve: simulated annotators, a kill -9 and a restart",
		ArgsUsage: " ",
		Description: `Writes synthetic candidates, starts 'align annotate serve' as a subprocess
of this binary with --per-item K, and has --annotators simulated annotators
label everything concurrently through the HTTP API (5% skips, 2% undone
and labelled again). Once, at a random moment, the server is killed with
SIGKILL and restarted with the same flags; clients retry. Afterwards the
labels file is checked: every item has exactly K labels from K different
annotators (fewer only where all the others skipped it), and the labels standing are exactly those the clients were
told are recorded. Prints labels per second and the p50/p99 latency of
label and next requests (a benchmark: nothing is asserted about speed).

Example:
   align annotate bench
   align annotate bench --items 200 --annotators 5 --json`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "items", Value: 2000, Usage: "synthetic items", EnvVars: []string{"ALIGN_ITEMS"}},
			&cli.IntFlag{Name: "annotators", Value: 20, Usage: "concurrent simulated annotators", EnvVars: []string{"ALIGN_BENCH_ANNOTATORS"}},
			&cli.IntFlag{Name: "per-item", Value: 2, Usage: "different annotators per item", EnvVars: []string{"ALIGN_PER_ITEM"}},
			&cli.BoolFlag{Name: "kill", Value: true, Usage: "kill -9 and restart the server once (--kill=false: never)", EnvVars: []string{"ALIGN_KILL"}},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the choices and the kill moment", EnvVars: []string{"ALIGN_SEED"}},
			&cli.StringFlag{Name: "dir", Usage: "work `DIR` for items and labels (default: a temporary folder, removed)", EnvVars: []string{"ALIGN_DIR"}},
			&cli.BoolFlag{Name: "json", Usage: "print the report as one JSON object", EnvVars: []string{"ALIGN_JSON"}},
		},
		Action: runAnnotateBench,
	}
}

func runAnnotateBench(c *cli.Context) error {
	if err := checkIntsAtLeast(c, 1, "items", "annotators", "per-item"); err != nil {
		return err
	}
	if c.Int("per-item") > c.Int("annotators") {
		return usagef("--per-item %d: needs at least as many --annotators (%d)", c.Int("per-item"), c.Int("annotators"))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := c.String("dir")
	if dir == "" {
		if dir, err = os.MkdirTemp("", "align-annotate-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	env := envOf(c)
	rep, err := annotate.Load(c.Context, annotate.LoadConfig{
		Items: c.Int("items"), Annotators: c.Int("annotators"), PerItem: c.Int("per-item"), Kill: c.Bool("kill"), Seed: c.Uint64("seed"),
		Dir: dir, Log: env.Stderr,
		Command: func(args []string) *exec.Cmd {
			return exec.Command(self, append([]string{"annotate", "serve"}, args...)...)
		},
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(env.Stdout).Encode(rep)
	}
	fmt.Fprintf(env.Stdout, "%d items x %d labels, %d annotators: %d labels in %.2fs = %.0f labels/s\n",
		rep.Items, rep.PerItem, rep.Annotators, rep.Labels, rep.Seconds, rep.LabelsPerS)
	fmt.Fprintf(env.Stdout, "POST /api/label latency p50 %.2f ms, p99 %.2f ms; GET /api/next p50 %.2f ms, p99 %.2f ms\n",
		rep.LabelP50MS, rep.LabelP99MS, rep.NextP50MS, rep.NextP99MS)
	if rep.KilledAt > 0 {
		fmt.Fprintf(env.Stdout, "killed (SIGKILL) after %d labels, restarted in %.0f ms; %d retried requests, %d conflicts, %d undos\n",
			rep.KilledAt, rep.RestartMS, rep.Retries, rep.Conflicts, rep.Undos)
	}
	fmt.Fprintf(env.Stdout, "check: every item has exactly %d labels from different annotators (or was skipped by all the others); nothing lost or duplicated\n", rep.PerItem)
	return nil
}
