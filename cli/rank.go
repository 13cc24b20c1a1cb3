package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/pipeline"
)

func init() { register(rankCommand) }

func rankCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "in", Usage: "candidates `FILE` from 'align collect' ('-': standard input)", Required: true, EnvVars: []string{"ALIGN_IN"}},
		&cli.StringFlag{Name: "judge", Usage: "judge `SPEC`: bedrock:MODEL, local:FILE.gguf, openai:URL[#model] or rules:CATALOG.json", Required: true, EnvVars: []string{"ALIGN_JUDGE"}},
		&cli.BoolFlag{Name: "single-order", Usage: "judge each pair in one order only (position bias uncontrolled)", EnvVars: []string{"ALIGN_SINGLE_ORDER"}},
		&cli.StringFlag{Name: "ties", Usage: "ties and inconsistent verdicts `FILE` (default: OUT.ties.jsonl; with --out -, rank.ties.jsonl in the current directory)", EnvVars: []string{"ALIGN_TIES"}},
		&cli.StringFlag{Name: "rubric", Usage: "rubric `FILE` replacing the default criteria", EnvVars: []string{"ALIGN_RUBRIC"}},
		&cli.IntFlag{Name: "max-tokens", Value: 1024, Usage: "judge output ceiling", EnvVars: []string{"ALIGN_MAX_TOKENS"}},
	}
	return &cli.Command{
		Name:      "rank",
		Usage:     "judge candidate responses into preference pairs",
		ArgsUsage: " ",
		Description: `Judges every pair of responses of each candidate record, in both orders by
default, and keeps a pair (chosen, rejected, per-criterion scores, reasoning,
objective) only when both orders agree. Ties and disagreements go to the
ties file, never to training; invalid judge output gets one repair attempt,
then a dead letter. The summary reports the consistency rate, first-position
win rate and tie rate. With --out -, ties and dead letters go to
rank.ties.jsonl and rank.dead.jsonl in the current directory unless --ties
and --dead-letter name other files. --max-usd 0 spends nothing (rules:
judges are free); without the flag there is no limit. Five calls in a row
that cannot reach the judge (refused, unknown host, no credentials) stop
the run with exit 1.

Example:
   align rank --in cand.jsonl --judge bedrock:anthropic.claude-3-5-sonnet-20240620-v1:0 --out pairs.jsonl
   align rank --in cand.jsonl --judge rules:testdata/catalog.json --out pairs.jsonl --max-usd 0
   align rank --in cand.jsonl --judge bedrock:anthropic.claude-3-5-sonnet-20240620-v1:0 --out pairs.jsonl --batch --batch-bucket my-bucket --batch-role arn:aws:iam::123456789012:role/bedrock-batch`,
		Flags:  append(append(append(flags, stageFlags()...), backendFlags()...), batchFlags()...),
		Action: runRank,
	}
}

func runRank(c *cli.Context) error {
	ties := c.String("ties")
	if ties == "" {
		ties = pipeline.StagePath("rank", c.String("out"), "ties")
	}
	pc, err := commonOf(c, "rank", "in", namedPath{"ties", ties})
	if err != nil {
		return err
	}
	if err := checkPositiveDurations(c, "batch-poll"); err != nil {
		return err
	}
	judge, err := openBackend(c, "judge")
	if err != nil {
		return err
	}
	defer judge.Close()
	cfg := pipeline.RankConfig{Common: pc, Judge: judge, SingleOrder: c.Bool("single-order"), MaxTokens: c.Int("max-tokens"), Ties: c.String("ties")}
	if f := c.String("rubric"); f != "" {
		b, err := readText(f)
		if err != nil {
			return err
		}
		cfg.Rubric = b
	}
	if cfg.Batch, err = openBatch(c); err != nil {
		return err
	}
	rep, err := pipeline.Rank(c.Context, cfg)
	if pc.DryRun && err == nil {
		printEstimate(c, rep.Estimate)
	}
	if rerr := report(c, rep); err == nil {
		err = rerr
	}
	return stageError(c, pc.Out, err)
}

func readText(path string) (string, error) {
	b, err := readFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return string(b), nil
}
