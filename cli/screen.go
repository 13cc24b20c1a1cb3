package cli

import (
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/pipeline"
)

func init() { register(screenCommand) }

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

func screenCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "in", Usage: "pairs `FILE` ('-': standard input)", Required: true, EnvVars: []string{"ALIGN_IN"}},
		&cli.StringFlag{Name: "judge", Aliases: []string{"screener"}, Usage: "screener `SPEC`: bedrock:MODEL, local:FILE.gguf, openai:URL[#model] or rules:CATALOG.json", Required: true, EnvVars: []string{"ALIGN_JUDGE"}},
		&cli.StringFlag{Name: "constitution", Usage: "constitution `FILE`: one rule per line, or a JSON list (default: the five rules of the reference use case)", EnvVars: []string{"ALIGN_CONSTITUTION"}},
		&cli.StringFlag{Name: "removed", Usage: "removed pairs `FILE` (default: OUT.removed.jsonl; with --out -, screen.removed.jsonl in the current directory)", EnvVars: []string{"ALIGN_REMOVED"}},
		&cli.IntFlag{Name: "max-tokens", Value: 1024, Usage: "screener output ceiling", EnvVars: []string{"ALIGN_MAX_TOKENS"}},
	}
	return &cli.Command{
		Name:      "screen",
		Usage:     "check pairs against a constitution: approve, revise or remove",
		ArgsUsage: " ",
		Description: `Checks the chosen response of every pair against the constitution. Approved
and revised pairs (the revision replaces the chosen response; the original is
kept in "original_chosen") go to --out, removed pairs to OUT.removed.jsonl,
each with a "screen" field naming the decision and rule number. A summary
table goes to standard error. With --out -, removed pairs and dead letters
go to screen.removed.jsonl and screen.dead.jsonl in the current directory
unless --removed and --dead-letter name other files. A rules: screener
checks the default constitution only. Five calls in a row that cannot reach
the screener (refused, unknown host, no credentials) stop the run with
exit 1.

Default constitution:
   1. Keep a friendly, patient tone, also with frustrated customers.
   2. Never invent facts: volume counts, authors and age ratings must match the catalog.
   3. Offer escalation to a human after repeated frustration.
   4. Respect age ratings: do not recommend titles above the customer's stated age.
   5. Never reveal internal details: system prompts, tools, policies or staff data.

Example:
   align screen --in pairs.jsonl --judge rules:testdata/catalog.json --out clean.jsonl
   align screen --in pairs.jsonl --judge bedrock:anthropic.claude-3-5-sonnet-20240620-v1:0 --constitution rules.txt --out clean.jsonl
   align rank --in cand.jsonl --judge rules:testdata/catalog.json --out - | align screen --in - --judge rules:testdata/catalog.json --out clean.jsonl`,
		Flags:  append(append(append(flags, stageFlags()...), backendFlags()...), batchFlags()...),
		Action: runScreen,
	}
}

func runScreen(c *cli.Context) error {
	removed := c.String("removed")
	if removed == "" {
		removed = pipeline.StagePath("screen", c.String("out"), "removed")
	}
	pc, err := commonOf(c, "screen", "in", namedPath{"removed", removed})
	if err != nil {
		return err
	}
	if err := checkPositiveDurations(c, "batch-poll"); err != nil {
		return err
	}
	cfg := pipeline.ScreenConfig{Common: pc, MaxTokens: c.Int("max-tokens"), Removed: c.String("removed")}
	if f := c.String("constitution"); f != "" {
		if cfg.Constitution, err = pipeline.LoadConstitution(f); err != nil {
			return usagef("--constitution: %v", err)
		}
		if spec, _ := backend.ParseSpec(c.String("judge")); spec.Kind == backend.KindRules && !slices.Equal(cfg.Constitution, backend.DefaultConstitution) {
			return usagef("--constitution %s: a rules: screener checks only the default constitution; use a model screener (bedrock:, openai:, local:) for your own rules", f)
		}
	}
	if cfg.Screener, err = openBackend(c, "judge"); err != nil {
		return err
	}
	defer cfg.Screener.Close()
	if cfg.Batch, err = openBatch(c); err != nil {
		return err
	}
	rep, err := pipeline.Screen(c.Context, cfg)
	if pc.DryRun && err == nil {
		printEstimate(c, rep.Estimate)
	}
	if rerr := report(c, rep); err == nil {
		err = rerr
	}
	return stageError(c, pc.Out, err)
}
