package cli

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/manga"
	"github.com/align-dev/align/align/pairs"
)

func init() { register(dataCommand) }

func dataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "make, check and split preference pair files",
		Description: `Tools for preference pair files (JSON Lines; .zst compressed by name;
'-' is standard input or output).

Example:
   align data synth --out-train train.jsonl --out-eval eval.jsonl --n 1000
   align data stats --in train.jsonl --objectives safety,tone,escalation,accuracy
   align data split --in pairs.jsonl.zst --out-train train.jsonl --out-eval eval.jsonl`,
		Subcommands: []*cli.Command{dataSynthCommand(), dataStatsCommand(), dataSplitCommand()},
	}
}

func seedFlag() cli.Flag {
	return &cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for generation and the train/eval split", EnvVars: []string{"ALIGN_SEED"}}
}

func evalFractionFlag() cli.Flag {
	return &cli.Float64Flag{Name: "eval-fraction", Value: 0.2, Usage: "share of pairs held out for evaluation, in [0, 1]", EnvVars: []string{"ALIGN_EVAL_FRACTION"}}
}

func outFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "out-train", Usage: "training pairs `FILE` (.jsonl or .jsonl.zst; '-': standard output)", Required: true, EnvVars: []string{"ALIGN_OUT_TRAIN"}},
		&cli.StringFlag{Name: "out-eval", Usage: "held-out pairs `FILE`", Required: true, EnvVars: []string{"ALIGN_OUT_EVAL"}},
	}
}

func dataSynthCommand() *cli.Command {
	return &cli.Command{
		Name:      "synth",
		Usage:     "generate synthetic preference pairs (or SFT examples) for the manga bookstore use case",
		ArgsUsage: " ",
		Description: `Generates --n pairs from a catalog, the four objectives in turn (tone,
accuracy, escalation, safety), and splits them into train and eval by a hash
of each pair's id. The same flags always give the same files; the shipped
testdata/pairs files are --n 1000 --eval-fraction 0.2 --seed 1.

--kind sft generates the supervised stage's data instead: many phrasings of
each series' facts (volume count, authors, complete or not, age rating),
age-appropriate picks for a stated age, and a human teammate offered after
repeated frustration, every answer true to the catalog. They are pairs too
(chosen: the catalog-true answer; rejected: the same with the fact wrong),
so align train --method sft trains on them (on the chosen answers) and the
DPO family reads them as well.

Example:
   align data synth --out-train train.jsonl --out-eval eval.jsonl
   align data synth --catalog shop.json --n 4000 --seed 7 --out-train t.jsonl.zst --out-eval e.jsonl.zst
   align data synth --kind sft --n 1400 --out-train sft.jsonl --out-eval sft-eval.jsonl`,
		Flags: append(outFlags(),
			&cli.IntFlag{Name: "n", Value: 1000, Usage: "number of pairs (or SFT examples)", EnvVars: []string{"ALIGN_N"}},
			&cli.StringFlag{Name: "kind", Value: "pairs", Usage: "pairs (preference pairs for DPO) or sft (catalog facts for the SFT stage)", EnvVars: []string{"ALIGN_KIND"}},
			evalFractionFlag(),
			seedFlag(),
			&cli.StringFlag{Name: "catalog", Usage: "series catalog `FILE` (JSON; default: the built-in catalog, the repository's testdata/catalog.json)", EnvVars: []string{"ALIGN_CATALOG"}},
		),
		Action: runDataSynth,
	}
}

func checkFraction(f float64) error {
	if f < 0 || f > 1 || math.IsNaN(f) {
		return usagef("--eval-fraction %g: want a number in [0, 1]", f)
	}
	return nil
}

// checkOuts checks --out-train and --out-eval: distinct, at most one
// standard output, and neither one of the inputs.
func checkOuts(c *cli.Context, inputs ...namedPath) error {
	if c.String("out-train") == "-" && c.String("out-eval") == "-" {
		return usagef("only one of --out-train and --out-eval can be standard output")
	}
	return checkDistinct(inputs, []namedPath{{"out-train", c.String("out-train")}, {"out-eval", c.String("out-eval")}})
}

func runDataSynth(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("data synth takes no arguments (got %q)", c.Args().First())
	}
	n := c.Int("n")
	if n <= 0 {
		return usagef("--n %d: want 1 or more", n)
	}
	synth := manga.Synth
	switch k := c.String("kind"); k {
	case "pairs":
	case "sft":
		synth = manga.SynthSFT
	default:
		return usagef("--kind %q: want pairs or sft", k)
	}
	if err := checkFraction(c.Float64("eval-fraction")); err != nil {
		return err
	}
	if err := checkOuts(c, namedPath{"catalog", c.String("catalog")}); err != nil {
		return err
	}
	cat := manga.DefaultCatalog()
	if f := c.String("catalog"); f != "" {
		var err error
		if cat, err = manga.LoadCatalog(f); err != nil {
			return err
		}
	}
	train, eval, err := synth(cat, n, c.Float64("eval-fraction"), c.Uint64("seed"))
	if err != nil {
		return err
	}
	if err := savePairs(env, c.String("out-train"), train); err != nil {
		return err
	}
	if err := savePairs(env, c.String("out-eval"), eval); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "align: wrote %d train pairs to %s and %d eval pairs to %s\n",
		len(train), c.String("out-train"), len(eval), c.String("out-eval"))
	return nil
}

// savePairs writes atomically, or to the command's standard output for "-".
func savePairs(env Env, path string, ps []pairs.Pair) error {
	if path == "-" {
		return pairs.Write(env.Stdout, ps)
	}
	if err := pairs.Save(path, ps); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func loadFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "in", Usage: "pairs `FILE` (.jsonl, .jsonl.zst or .parquet: TRL columns or HH text; '-': standard input)", Required: true, EnvVars: []string{"ALIGN_IN"}},
		&cli.BoolFlag{Name: "skip-invalid", Usage: "skip and count bad lines instead of failing", EnvVars: []string{"ALIGN_SKIP_INVALID"}},
		&cli.StringSliceFlag{Name: "objectives", Usage: "allowed objectives, comma-separated (default: any)", EnvVars: []string{"ALIGN_OBJECTIVES"}},
	}
}

func loadPairs(c *cli.Context) ([]pairs.Pair, pairs.Stats, error) {
	opt := pairs.LoadOptions{SkipInvalid: c.Bool("skip-invalid"), Objectives: c.StringSlice("objectives"), Dedupe: c.Bool("dedupe")}
	path := c.String("in")
	if path == "-" {
		return pairs.Read(envOf(c).Stdin, "stdin", opt)
	}
	return pairs.Load(path, opt)
}

func dataStatsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "validate a pairs file and count its pairs per objective",
		ArgsUsage: " ",
		Description: `Reads every pair, failing on the first bad line (file:line: reason) unless
--skip-invalid, and prints counts per objective; --json prints one JSON object.

Example:
   align data stats --in testdata/pairs/train.jsonl
   zstdcat pairs.jsonl.zst | align data stats --in - --skip-invalid --json`,
		Flags: append(loadFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print the counts as one JSON object", EnvVars: []string{"ALIGN_JSON"}},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("data stats takes no arguments (got %q)", c.Args().First())
			}
			_, st, err := loadPairs(c)
			if err != nil {
				return err
			}
			env := envOf(c)
			if c.Bool("json") {
				return json.NewEncoder(env.Stdout).Encode(st)
			}
			fmt.Fprint(env.Stdout, st.Summary())
			for _, e := range st.Errors {
				fmt.Fprintf(env.Stderr, "align: skipped %s\n", e)
			}
			return nil
		},
	}
}

func dataSplitCommand() *cli.Command {
	return &cli.Command{
		Name:      "split",
		Usage:     "split pairs into train and eval by id hash, optionally de-duplicating",
		ArgsUsage: " ",
		Description: `Each pair goes to eval when a hash of (seed, id) falls below
--eval-fraction, so a pair keeps its side when the file grows. --dedupe drops
pairs whose prompt, chosen and rejected match an earlier pair's (ignoring case
and white space), with or without ids, and says how many; a repeated id on
other content is an error naming both lines. Neither output may be the input.

Example:
   align data split --in pairs.jsonl --out-train train.jsonl --out-eval eval.jsonl --dedupe`,
		Flags: append(append(loadFlags(), outFlags()...),
			evalFractionFlag(),
			seedFlag(),
			&cli.BoolFlag{Name: "dedupe", Usage: "drop repeated pairs first", EnvVars: []string{"ALIGN_DEDUPE"}},
		),
		Action: func(c *cli.Context) error {
			env := envOf(c)
			if c.NArg() > 0 {
				return usagef("data split takes no arguments (got %q)", c.Args().First())
			}
			if err := checkFraction(c.Float64("eval-fraction")); err != nil {
				return err
			}
			if err := checkOuts(c, namedPath{"in", c.String("in")}); err != nil {
				return err
			}
			ps, st, err := loadPairs(c)
			if err != nil {
				return err
			}
			dropped := st.Duplicates
			train, eval, err := pairs.Split(ps, c.Float64("eval-fraction"), c.Uint64("seed"))
			if err != nil {
				return usagef("%v", err)
			}
			if err := savePairs(env, c.String("out-train"), train); err != nil {
				return err
			}
			if err := savePairs(env, c.String("out-eval"), eval); err != nil {
				return err
			}
			fmt.Fprintf(env.Stderr, "align: %s read, %d skipped, %s dropped; %d train, %d eval\n",
				fmtCount(st.Read+dropped, "pair", "pairs"), st.Skipped, fmtCount(dropped, "duplicate", "duplicates"), len(train), len(eval))
			return nil
		},
	}
}
