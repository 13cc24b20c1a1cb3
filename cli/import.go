package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/pipeline"
)

func init() { register(importCommand) }

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "make pairs from feedback logs and human labels",
		ArgsUsage: " ",
		Description: `Turns implicit feedback (thumbs up or down on responses to the same prompt:
{"prompt" | "messages", "response", "rating": "up" | "down"}) into pairs
(liked over disliked, source "feedback"), reads human-labelled pair files
(source "human" unless set), merges them, removes duplicates and splits them
into train and eval files.

Example:
   align import --feedback thumbs.jsonl --labeled reviewed.jsonl --out-train train.jsonl --out-eval eval.jsonl
   align import --feedback logs/2024-*.jsonl.zst --out-train t.jsonl --out-eval e.jsonl --eval-fraction 0.1`,
		Flags: append(outFlags(),
			&cli.StringSliceFlag{Name: "feedback", Usage: "feedback log `FILE` (repeatable)", EnvVars: []string{"ALIGN_FEEDBACK"}},
			&cli.StringSliceFlag{Name: "labeled", Usage: "human-labelled pairs `FILE` (repeatable)", EnvVars: []string{"ALIGN_LABELED"}},
			&cli.StringFlag{Name: "label-source", Value: "human", Usage: "source tag for labelled pairs without one", EnvVars: []string{"ALIGN_LABEL_SOURCE"}},
			&cli.IntFlag{Name: "max-per-prompt", Value: 4, Usage: "feedback pairs per prompt at most", EnvVars: []string{"ALIGN_MAX_PER_PROMPT"}},
			evalFractionFlag(),
			seedFlag(),
		),
		Action: runImport,
	}
}

func runImport(c *cli.Context) error {
	if len(c.StringSlice("feedback")) == 0 && len(c.StringSlice("labeled")) == 0 {
		return usagef("give --feedback or --labeled files")
	}
	if err := checkFraction(c.Float64("eval-fraction")); err != nil {
		return err
	}
	if err := checkOuts(c); err != nil {
		return err
	}
	rep, err := pipeline.Import(pipeline.ImportConfig{
		Feedback: c.StringSlice("feedback"), Labeled: c.StringSlice("labeled"), LabelSource: c.String("label-source"),
		OutTrain: c.String("out-train"), OutEval: c.String("out-eval"), EvalFraction: c.Float64("eval-fraction"),
		Seed: c.Uint64("seed"), MaxPerPrompt: c.Int("max-per-prompt"), Stdin: envOf(c).Stdin,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(envOf(c).Stderr, "import: %d feedback events → %d pairs (%d prompts unpaired), %d labelled, %d duplicates dropped; %d train, %d eval; by source %v\n",
		rep.FeedbackEvents, rep.FeedbackPairs, rep.Unpaired, rep.LabeledPairs, rep.Duplicates, rep.Train, rep.Eval, rep.BySource)
	return nil
}
